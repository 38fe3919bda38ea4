"""The dashboard at ``/ui``: :mod:`~shared.ui.session` (the login session and CSRF checks),
:mod:`~shared.ui.revocation` (logged-out sessions), :mod:`~shared.ui.panels` (jobs, fleet and cost as HTML),
:mod:`~shared.ui.pages` (the login page and the dashboard), :mod:`~shared.ui.assets` (templates and static
files, shipped as package data). The HTTP handlers are ``functions/ui.py``; docs/dashboard.md explains it."""
