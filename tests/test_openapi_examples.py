"""The request examples of the API reference are requests the API accepts.

Built from the application's routes, not from a list: every request model a route's body reaches
(the body itself, the members of a union, models nested in fields) has each example of its
``json_schema_extra`` validated by the model; named examples of a body parameter
(``Body(openapi_examples=...)``) are validated by the parameter's type; multipart examples given in
a route's ``openapi_extra`` name only the route's form fields, with values those fields accept.
"""

from __future__ import annotations

import json
import typing
from functools import cache
from typing import Annotated, Any

import pytest
from fastapi import UploadFile
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, TypeAdapter

from huiyuan.app import create_app
from huiyuan.benefits.schemas import ServiceDefinitionIn, UsageLimits
from huiyuan.coupons.schemas import CartIn, EvaluateIn
from huiyuan.members.schemas import MemberUpdate


@cache
def body_routes() -> tuple[tuple[str, APIRoute], ...]:
    """``("POST /api/v1/…", route)`` for each documented route with a request body."""
    app = create_app(start_worker=False)
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema and route.body_field is not None:
            label = f"{'|'.join(sorted(route.methods))} {context.path_format}"
            found.append((label, route))
    return tuple(found)


def _reachable(annotation: Any, seen: dict[type[BaseModel], None]) -> None:
    """Add the pydantic models ``annotation`` names, through unions, containers and fields."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return
        seen[annotation] = None
        for field in annotation.model_fields.values():
            _reachable(field.annotation, seen)
        return
    for arg in typing.get_args(annotation):
        _reachable(arg, seen)


@cache
def request_models() -> tuple[type[BaseModel], ...]:
    seen: dict[type[BaseModel], None] = {}
    for _, route in body_routes():
        assert route.body_field is not None
        _reachable(route.body_field.field_info.annotation, seen)
    return tuple(seen)


def _model_examples(model: type[BaseModel]) -> list[Any]:
    extra = model.model_config.get("json_schema_extra")
    if not isinstance(extra, dict):
        return []
    examples = list(extra.get("examples") or [])
    if "example" in extra:
        examples.append(extra["example"])
    return examples


def model_cases() -> list[Any]:
    return [
        pytest.param(model, example, id=f"{model.__module__}.{model.__qualname__}[{i}]")
        for model in request_models()
        for i, example in enumerate(_model_examples(model))
    ]


def named_body_cases() -> list[Any]:
    cases = []
    for label, route in body_routes():
        for param in route.dependant.body_params:
            for name, example in (getattr(param.field_info, "openapi_examples", None) or {}).items():
                cases.append(pytest.param(param, example, id=f"{label} {param.name}:{name}"))
    return cases


def multipart_cases() -> list[Any]:
    cases = []
    for label, route in body_routes():
        content = (route.openapi_extra or {}).get("requestBody", {}).get("content", {})
        for media_type, body in content.items():
            if media_type.startswith("multipart/") and "example" in body:
                cases.append(pytest.param(route, body["example"], id=label))
    return cases


def test_the_walk_reaches_unions_and_nested_models() -> None:
    models = request_models()
    for model in (MemberUpdate, EvaluateIn, CartIn, ServiceDefinitionIn, UsageLimits):
        assert model in models, model
    assert len(model_cases()) > 50


@pytest.mark.parametrize(("model", "example"), model_cases())
def test_model_example_is_valid(model: type[BaseModel], example: Any) -> None:
    json.dumps(example)  # it is printed in the OpenAPI document
    model.model_validate(example)


@pytest.mark.parametrize(("param", "example"), named_body_cases())
def test_named_body_example_is_valid(param: Any, example: Any) -> None:
    assert "value" in example, "a named example carries its request under 'value'"
    json.dumps(example["value"])
    TypeAdapter(Annotated[param.field_info.annotation, param.field_info]).validate_python(example["value"])


def _is_upload(annotation: Any) -> bool:
    if annotation is UploadFile:
        return True
    return any(_is_upload(arg) for arg in typing.get_args(annotation))


@pytest.mark.parametrize(("route", "example"), multipart_cases())
def test_multipart_example_names_the_form_fields(route: APIRoute, example: Any) -> None:
    assert route.body_field is not None
    form = route.body_field.field_info.annotation
    assert isinstance(form, type) and issubclass(form, BaseModel)
    fields = {field.alias or name: field for name, field in form.model_fields.items()}
    assert set(example) <= set(fields), sorted(set(example) - set(fields))
    for name, value in example.items():
        field = fields[name]
        if _is_upload(field.annotation):
            assert isinstance(value, str) and value, f"{name}: a file's example is its text"
        else:
            TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
