"""airlock.matching: the Rust SDK's tests, ported, plus the byte semantics."""

from airlock.matching import glob, method, path_under, request_matches
from airlock.testing import request


def test_single_star_stays_within_a_segment():
    assert glob("/users/*/keys", "/users/alice/keys")
    assert not glob("/users/*/keys", "/users/alice/bob/keys")
    assert glob("/admin/*", "/admin/")
    assert not glob("/admin/*", "/admin/a/b")


def test_double_star_crosses_segments():
    assert glob("/admin/**", "/admin/a/b/c")
    assert glob("/admin/**", "/admin/")
    assert not glob("/admin/**", "/administrator")
    assert not glob("/admin/**", "/admin")
    assert glob("**.json", "/a/b/c.json")
    assert glob("/**", "/")


def test_question_mark_and_literals():
    assert glob("/v?/items", "/v2/items")
    assert not glob("/v?/items", "/v/items")
    assert glob("*.example.com", "api.example.com")
    assert not glob("*.example.com", "example.com")
    assert not glob("/a", "/ab")
    assert glob("", "")
    assert not glob("", "/")


def test_question_mark_matches_one_byte_as_in_rust():
    # "é" is two bytes in UTF-8: `?` matches one of them, like the Rust SDK.
    assert not glob("/?", "/é")
    assert glob("/??", "/é")


def test_pathological_patterns_stay_linear():
    text = "/" + "a" * 2048
    assert not glob("**a**a**a**a**a**a**a**b", text)
    assert glob("**a**a**a**a**a**a**a**", text)


def test_prefixes_match_whole_segments():
    assert path_under("/api", "/api")
    assert path_under("/api/", "/api/users")
    assert not path_under("/api", "/apiary")
    assert path_under("/", "/anything")


def test_methods_ignore_ascii_case_and_star_matches_all():
    assert method("delete", "DELETE")
    assert method("*", "PATCH")
    assert not method("GET", "POST")
    assert not method("\u0130", "i")  # only ASCII letters fold, as eq_ignore_ascii_case


def test_request_matches_every_given_field():
    req = request("DELETE", "/admin/x", host="api.example.com").request()
    assert request_matches(None, None, None, req)
    assert request_matches(["get", "delete"], ["/admin/**"], ["*.EXAMPLE.com"], req)
    assert not request_matches([], None, None, req)
    assert not request_matches(None, ["/public/**"], None, req)
    assert not request_matches(None, None, ["example.com"], req)
