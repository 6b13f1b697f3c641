"""The dashboard at /ui: a static page over the same API a client calls."""

from service.components import Feature
from service.ui.router import router, static

feature = Feature("ui", routers=[router], route_responses=False, mounts=[("/ui", static, "ui")])
