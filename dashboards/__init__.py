"""Grafana dashboards as code: one per use-case template (the use-case YAML's ``dashboard`` id).

The dashboards and their provisioning arrive with the pages-and-dashboards issue; the template
ids are fixed in :data:`kits.models.DashboardTemplate`.
"""
