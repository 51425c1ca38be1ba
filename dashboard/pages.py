"""What every dashboard page shares: login required (the admin's login page, then back to the page), rendered from
`dashboard/base.html` with the page's own context."""

from __future__ import annotations

from django.contrib.auth.mixins import LoginRequiredMixin
from django.urls import reverse_lazy
from django.views.generic import TemplateView


class DashboardPage(LoginRequiredMixin, TemplateView):
    """A page of the dashboard: subclasses set `template_name` (extending `dashboard/base.html`) and add context.
    Pages read through selectors; every change goes through an app's API (audited services), never a page view."""

    login_url = reverse_lazy("admin:login")
