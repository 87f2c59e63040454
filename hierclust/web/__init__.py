"""The live web view of a deployment (``hierclust web``) and the self-contained benchmark page
(``hierclust bench --html``).

- :mod:`hierclust.web.model`: what the page shows, from the workers' status snapshots and the
  event logs (pure functions: the same ``aggregate`` as ``hierclust status``);
- :mod:`hierclust.web.feed`: reads a state directory (snapshots, new event-log lines);
- :mod:`hierclust.web.server`: the aiohttp application (page, JSON, WebSocket, admin);
- :mod:`hierclust.web.report`: a benchmark's JSON report as one HTML file with inline SVG;
- :mod:`hierclust.web.cdp`: a small Chromium driver over the DevTools protocol (the browser
  tests and the screenshots in docs/web/).

The page itself is ``static/index.html`` and ``static/app.js``: no build step.
"""
