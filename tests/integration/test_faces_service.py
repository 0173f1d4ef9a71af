"""The /faces/* API against a real server with the bundled face models (detector + embedder)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.conftest import Server, start_server, stop_server
from tests.faces_fixture import (
    AUTH,
    KEY,
    enroll,
    face_env,
    files,
    identify,
    identity,
    jpeg,
)


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("faces"), face_env(VISION_API_KEY=KEY))
    yield server
    stop_server(server)


def test_detect_real_photos(faces: Server) -> None:
    for name, expected in [("astronaut", 1), ("grace_hopper", 1), ("chelsea", 0), ("coffee", 0)]:
        r = faces.client.post("/faces/detect", files=files(jpeg(name)))
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["faces"]) == expected, (name, body["faces"])
        for face in body["faces"]:
            x1, y1, x2, y2 = face["box"]
            assert 0 <= x1 < x2 <= body["image"]["width"] and 0 <= y1 < y2
            assert face["score"] >= 0.9 and len(face["landmarks"]) == 5
        assert body["model"]["name"] == "faces-detector"


def test_embed_is_unit_length_and_stable(faces: Server) -> None:
    r = faces.client.post("/faces/embed", files=files(jpeg("astronaut")))
    assert r.status_code == 200, r.text
    (face,) = r.json()["faces"]
    vector = face["embedding"]
    assert abs(sum(v * v for v in vector) - 1.0) < 1e-4
    again = faces.client.post("/faces/embed", files=files(jpeg("astronaut"))).json()
    assert again["faces"][0]["embedding"] == vector
    crop = faces.client.post(
        "/faces/embed", files=files(jpeg("astronaut")), data={"detect_faces": "false"}
    )
    assert crop.status_code == 200 and len(crop.json()["faces"]) == 1


def test_enroll_identify_verify_real_people(faces: Server) -> None:
    eileen = enroll(faces.client, jpeg("astronaut"), "eileen", metadata='{"source": "test"}')
    assert eileen.status_code == 200, eileen.text
    grace = enroll(faces.client, jpeg("grace_hopper"), "grace")
    assert grace.status_code == 200, grace.text
    assert re.fullmatch(r"[0-9a-f]{32}", eileen.json()["face_id"])
    for name, subject in [("astronaut", "eileen"), ("grace_hopper", "grace")]:
        for variant in (jpeg(name, quality=40), jpeg(name, flip=True), jpeg(name, rotate=5)):
            r = identify(faces.client, variant, top_k="2")
            assert r.status_code == 200, r.text
            (face,) = r.json()["faces"]
            assert face["subject"] == subject, face
            assert face["matches"][0]["subject"] == subject
            assert face["matches"][0]["similarity"] >= r.json()["threshold"]
            assert {"decode", "infer", "embed", "search", "total"} <= set(r.json()["timing_ms"])
    # Below the threshold the best match is still listed, but names nobody.
    strict = identify(faces.client, jpeg("astronaut", quality=40), threshold="0.99999").json()
    (face,) = strict["faces"]
    assert face["subject"] is None and face["matches"][0]["subject"] == "eileen"
    assert face["similarity"] < strict["threshold"] == 0.99999
    nobody = identify(faces.client, jpeg("chelsea")).json()
    assert nobody["faces"] == []
    same = faces.client.post(
        "/faces/verify",
        files={
            **files(jpeg("astronaut"), "image_a"),
            **files(jpeg("astronaut", 50, True), "image_b"),
        },
    ).json()
    assert same["match"] is True and same["similarity"] >= same["threshold"]
    other = faces.client.post(
        "/faces/verify",
        files={**files(jpeg("astronaut"), "image_a"), **files(jpeg("grace_hopper"), "image_b")},
    ).json()
    assert other["similarity"] < same["similarity"]
    by_subject = faces.client.post(
        "/faces/verify", files=files(jpeg("grace_hopper", 60)), data={"subject": "grace"}
    ).json()
    assert by_subject["match"] is True
    annotated = identify(faces.client, jpeg("astronaut"), format="png")
    assert annotated.status_code == 200 and annotated.content[:4] == b"\x89PNG"


def test_synthetic_identities_are_told_apart(faces: Server) -> None:
    people = range(6)
    for person in people:
        r = enroll(faces.client, identity(person)[0], f"synthetic-{person}")
        assert r.status_code == 200, r.text
    hits = total = 0
    for person in people:
        for probe in identity(person)[1:]:
            r = identify(faces.client, probe)
            assert r.status_code == 200, r.text
            found = r.json()["faces"]
            total += 1
            hits += bool(found) and found[0]["matches"][0]["subject"] == f"synthetic-{person}"
    assert hits / total >= 0.8, f"rank-1 {hits}/{total}"
    verdicts = [
        faces.client.post(
            "/faces/verify",
            files=files(identity(person)[1]),
            data={"subject": f"synthetic-{other}"},
        ).json()
        for person, other in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (2, 0)]
    ]
    same, different = verdicts[:3], verdicts[3:]
    assert min(v["similarity"] for v in same) > max(v["similarity"] for v in different)
    assert sum(v["match"] for v in same) >= 2 and not any(v["match"] for v in different)


def test_gallery_management(faces: Server) -> None:
    c = faces.client
    ids = [enroll(c, identity(10)[i], f"manage-{i % 2}").json()["face_id"] for i in range(3)]
    page = c.get("/faces/subjects", params={"limit": 1}).json()
    assert len(page["subjects"]) == 1 and page["next_cursor"]
    names, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = c.get("/faces/subjects", params=params).json()
        names += [s["subject"] for s in page["subjects"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == sorted(names) and {"manage-0", "manage-1"} <= set(names)
    subject = c.get("/faces/subjects/manage-0").json()
    assert [f["face_id"] for f in subject["faces"]] == [ids[0], ids[2]]
    assert "embedding" not in subject["faces"][0]
    assert c.delete(f"/faces/{ids[0]}", headers=AUTH).status_code == 204
    assert c.delete(f"/faces/{ids[0]}", headers=AUTH).json()["error"]["code"] == "not_found"
    assert c.delete("/faces/subjects/manage-0", headers=AUTH).status_code == 204
    assert c.get("/faces/subjects/manage-0").status_code == 404
    assert c.delete("/faces/subjects/manage-0", headers=AUTH).status_code == 404
    gallery = c.get("/faces/gallery").json()
    assert gallery["backend"] == "SQLiteGallery" and gallery["search"] == "exact"
    metrics = c.get("/metrics").text
    match = re.search(r"^vision_gallery_faces(\{[^}]*\})? (\S+)$", metrics, re.M)
    assert match is not None and float(match.group(2)) >= 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/faces/enroll"), ("delete", "/faces/abc"), ("delete", "/faces/subjects/x")],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic " + KEY, KEY])
def test_writes_need_the_key(faces: Server, method: str, path: str, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    if method == "post":
        r = faces.client.post(
            path, files=files(jpeg("astronaut")), data={"subject": "intruder"}, headers=headers
        )
    else:
        r = faces.client.request(method.upper(), path, headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert faces.client.get("/faces/subjects/intruder").status_code == 404


@pytest.mark.parametrize(
    ("fields", "image", "status", "code"),
    [
        ({"subject": "x"}, "coffee", 422, "no_face"),
        ({}, "astronaut", 422, "invalid_parameter"),
        ({"subject": " padded"}, "astronaut", 422, "invalid_parameter"),
        ({"subject": "x", "metadata": "[1]"}, "astronaut", 422, "invalid_parameter"),
        ({"subject": "x", "score_threshold": "2"}, "astronaut", 422, "invalid_parameter"),
    ],
)
def test_bad_enrolments(
    faces: Server, fields: dict[str, str], image: str, status: int, code: str
) -> None:
    r = faces.client.post("/faces/enroll", files=files(jpeg(image)), data=fields, headers=AUTH)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text


def test_bad_identify_and_verify(faces: Server) -> None:
    c = faces.client
    assert identify(c, b"not an image").status_code == 400
    assert identify(c, jpeg("astronaut"), top_k="0").status_code == 422
    assert identify(c, jpeg("astronaut"), threshold="1.5").status_code == 422
    r = c.post("/faces/verify", files=files(jpeg("astronaut"), "image_a"))
    assert r.status_code == 422
    r = c.post("/faces/verify", files=files(jpeg("astronaut")), data={"subject": "nobody-here"})
    assert r.status_code == 404
    r = c.post(
        "/faces/verify",
        files={**files(jpeg("astronaut"), "image_a"), **files(jpeg("coffee"), "image_b")},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (422, "no_face")
    assert c.get("/faces/subjects", params={"cursor": "!!"}).status_code == 422
    assert c.get("/faces/subjects", params={"limit": 0}).status_code == 422


def test_models_list_the_face_models(faces: Server) -> None:
    models = {m["name"]: m for m in faces.client.get("/v1/models").json()["models"]}
    assert models["faces-detector"]["task"] == "face_detection"
    assert models["faces-embedder"]["task"] == "face_embedding"


def test_detect_answers_the_annotated_image(faces: Server) -> None:
    r = faces.client.post("/faces/detect", files=files(jpeg("astronaut")), data={"format": "png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content[:4] == b"\x89PNG"
    bad = faces.client.post("/faces/detect", files=files(jpeg("astronaut")), data={"format": "gif"})
    assert bad.status_code == 422
