"""Open311 GeoReport v2: an adapter over the reports and the catalogue."""
