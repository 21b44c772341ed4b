"""`musicgen app`: a local web app for making music with a pipeline.

`studio.py` is the work (requests checked, generation, measuring, files), `page.py` the
Gradio page over it, `server.py` loads a pipeline and serves the page. Importing this
package imports neither Gradio nor a model.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the page calls nowhere home
