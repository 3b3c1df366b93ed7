"""The catalogue as apps read it to build their report form: categories, names, extra questions.

Public, like Open311's service list: it holds nothing private, and a shared cache may keep it. Both
languages are in the one answer, so it never varies by Accept-Language; the ETag changes with the
catalogue (a reload), and `If-None-Match` answers 304 while it has not.
"""

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response

from service.catalogue import service
from service.catalogue.attributes import definitions_of
from service.catalogue.schemas import AttributePublic, AttributeValuePublic, CataloguePublic, CategoryPublic
from service.db import SessionDep
from service.errors import problem_responses
from service.ioc.cache import etag_matches, etag_of

router = APIRouter(prefix="/v1/categories", tags=["catalogue"])

# Apps see a catalogue reload within five minutes; the ETag makes the check after that cheap.
CACHE_CONTROL = "public, max-age=300"


def category_public(category) -> CategoryPublic:
    return CategoryPublic(
        code=category.code,
        name_vi=category.name_vi,
        name_en=category.name_en,
        description_vi=category.description_vi or "",
        description_en=category.description_en or "",
        attributes=[
            AttributePublic(
                code=attribute["code"],
                datatype=attribute["datatype"],
                required=attribute["required"],
                variable=attribute.get("variable", True),
                order=attribute["order"],
                description_vi=attribute["description_vi"],
                description_en=attribute["description_en"],
                datatype_description_vi=attribute.get("datatype_description_vi", ""),
                datatype_description_en=attribute.get("datatype_description_en", ""),
                values=[AttributeValuePublic(**value) for value in attribute.get("values", [])],
            )
            for attribute in definitions_of(category)
        ],
    )


@router.get(
    "",
    response_model=CataloguePublic,
    summary="The categories and their extra questions, for an app's report form",
    responses={
        200: {"headers": {"ETag": {"schema": {"type": "string"}}, "Cache-Control": {"schema": {"type": "string"}}}},
        304: {"description": "Not modified: the catalogue matching `If-None-Match` is still current"},
        **problem_responses(503),
    },
)
async def list_categories(
    session: SessionDep, if_none_match: Annotated[str | None, Header(max_length=1000)] = None
) -> Response:
    """Active categories in their order, each with its names and description in Vietnamese and
    English and its `attributes`: answer them in `attributes` of POST /v1/reports (required ones
    must be answered when the citizen picks the category). No key needed."""
    catalogue = CataloguePublic(
        version=await service.current_version(session),
        categories=[category_public(category) for category in await service.list_categories(session)],
    )
    body = catalogue.model_dump_json().encode()
    headers = {"ETag": etag_of(body), "Cache-Control": CACHE_CONTROL}
    if etag_matches(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
