"""What GET /v1/jurisdictions/outlines answers: a GeoJSON FeatureCollection (lon/lat, RFC 7946)."""

from typing import Any, Literal

from pydantic import BaseModel, Field


class OutlineProperties(BaseModel):
    code: str
    name: str = Field(description="The name as the city's file gives it (Vietnamese)")
    level: str
    parent_code: str | None
    label_point: tuple[float, float] = Field(description="(lon, lat) well inside the outline, for its name")


class OutlineGeometry(BaseModel):
    type: Literal["Polygon", "MultiPolygon"]
    coordinates: list[Any]


class OutlineFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: str
    geometry: OutlineGeometry
    properties: OutlineProperties


class Outlines(BaseModel):
    """The boundaries reports are placed in (the wards), simplified for drawing; shared edges stay shared."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    level: str | None = Field(description="Their level (`ward` for most cities); null when none is imported")
    bbox: tuple[float, float, float, float] | None = Field(description="min lon, min lat, max lon, max lat")
    features: list[OutlineFeature]
