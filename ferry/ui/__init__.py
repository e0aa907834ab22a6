"""ferry's web UI: pages served on the API port, every asset shipped in the package (no CDN, no node).

`routes.py` mounts the pages and `static/`; each view is `static/views/<view>.js` (+ `.css`) on the
shared `static/ferry.js` and `static/ferry.css`; charts use the vendored uPlot (`static/vendor/`, MIT).
"""
