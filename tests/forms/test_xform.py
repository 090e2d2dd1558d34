"""XForm → FormSchema, on inline XLSForms converted by pyxform.

Rules: XF1 identity (form id, version, title, root name) comes from the primary instance;
XF2 every node of the primary instance is a Field, the jr:template copy is not duplicated, nested
repeats know their innermost repeat; XF3 controls map to XLSForm widgets; XF4 translations are keyed
by language code with the written names kept; XF5 choice lists (inline, file, itemsets) and
choice_filter; XF6 media files for the manifest; XF7 entity declarations; XF8 encryption and
instance_name; XF9 every bind nodeset has a Field; XF10 the JSON round trip is exact.
"""

from __future__ import annotations

import json

import pytest
from lxml import etree

from forms.errors import FormError
from forms.schema import FormSchema, MediaRef
from forms.xform import parse_xform
from tests.forms.conftest import md_schema, md_xform

COOP = """
| survey   |                        |        |                     |                      |             |
|          | type                   | name   | label::English (en) | label::Français (fr) | calculation |
|          | text                   | coop   | Coop                | Coopérative          |             |
|          | select_one region      | region | Region              | Région               |             |
|          | select_multiple region | sites  | Sites               | Sites                |             |
|          | note                   | n1     | Hello               | Bonjour              |             |
|          | image                  | photo  | Photo               | Photo                |             |
|          | audio                  | rec    | Rec                 | Rec                  |             |
|          | file                   | doc    | Doc                 | Doc                  |             |
|          | rank region            | rk     | Rank                | Classer              |             |
|          | range                  | rg     | Range               | Plage                |             |
|          | acknowledge            | ack    | OK                  | OK                   |             |
|          | begin_group            | hh     | Household           | Ménage               |             |
|          | begin_repeat           | member | Member              | Membre               |             |
|          | text                   | mname  | Name                | Nom                  |             |
|          | begin_repeat           | child  | Child               | Enfant               |             |
|          | text                   | cname  | Child name          | Nom                  |             |
|          | end_repeat             |        |                     |                      |             |
|          | end_repeat             |        |                     |                      |             |
|          | end_group              |        |                     |                      |             |
|          | calculate              | total  |                     |                      | 1 + 1       |
|          | start                  | start  |                     |                      |             |
| choices  |                        |        |                     |                      |             |
|          | list_name              | name   | label::English (en) | label::Français (fr) |             |
|          | region                 | r1     | North               | Nord                 |             |
|          | region                 | r2     | South               | Sud                  |             |
| settings |                        |        |                     |                      |             |
|          | form_id                | version | default_language   | instance_name        | form_title  |
|          | coop_md                | 3      | Français (fr)       | concat(${coop}, '-') | Coop survey |
"""

PLACES = """
| survey   |                                      |          |          |                  |          |
|          | type                                 | name     | label    | choice_filter    | image    |
|          | select_one region                    | region   | Region   |                  | map.png  |
|          | select_one district                  | district | District | region=${region} |          |
|          | select_one_from_file villages.csv    | village  | Village  |                  |          |
|          | select_multiple_from_file sites.xml  | sites    | Sites    |                  |          |
|          | select_one_from_file museums.geojson | museum   | Museum   |                  |          |
| choices  |                                      |          |          |                  |          |
|          | list_name                            | name     | label    | region           |          |
|          | region                               | r1       | North    |                  |          |
|          | region                               | r2       | South    |                  |          |
|          | district                             | d1       | D1       | r1               |          |
|          | district                             | d2       | D2       | r2               |          |
| settings |                                      |          |          |                  |          |
|          | form_id                              |          |          |                  |          |
|          | places                               |          |          |                  |          |
"""

TREES_UPSERT = """
| survey   |           |             |            |              |               |
|          | type      | name        | label      | save_to      |               |
|          | text      | tid         | Id         |              |               |
|          | text      | species     | Species    | species      |               |
|          | integer   | height      | Height     | height       |               |
| entities |           |             |            |              |               |
|          | list_name | label       | entity_id  | create_if    | update_if     |
|          | trees     | ${species}  | ${tid}     | ${tid} = ''  | ${tid} != ''  |
| settings |           |             |            |              |               |
|          | form_id   | public_key  |            |              |               |
|          | trees_upd | MIIBIjANBgk |            |              |               |
"""


@pytest.fixture(scope="module")
def coop() -> FormSchema:
    """The translated coop form with every widget and nested repeats."""
    return md_schema(COOP)


@pytest.fixture(scope="module")
def places() -> FormSchema:
    """A form with inline, filtered and file choice lists, and an image."""
    return md_schema(PLACES)


def _field(schema: FormSchema, path: str) -> object:
    found = schema.field_by_path(path)
    assert found is not None, path
    return found


def test_identity(coop: FormSchema) -> None:
    """XF1: form id, version, title and root name."""
    assert (coop.form_id, coop.version, coop.title, coop.root_name) == ("coop_md", "3", "Coop survey", "data")


def test_instance_tree_and_repeats(coop: FormSchema) -> None:
    """XF2: each node once (no template copies), repeats nested with their innermost repeat."""
    paths = [f.path for f in coop.fields]
    assert len(paths) == len(set(paths))
    assert [r.path for r in coop.repeats] == ["hh/member", "hh/member/child"]
    cname = coop.field_by_path("hh/member/child/cname")
    assert cname is not None and cname.repeat == "hh/member/child"
    child = coop.field_by_path("hh/member/child")
    assert child is not None and (child.kind, child.repeat) == ("repeat", "hh/member")
    household = coop.field_by_path("hh")
    assert household is not None and (household.kind, household.repeat) == ("group", None)
    assert paths[-3:] == ["meta", "meta/instanceID", "meta/instanceName"]


@pytest.mark.parametrize(
    ("path", "control", "bind_type"),
    [
        ("coop", "input", "string"),
        ("region", "select_one", "string"),
        ("sites", "select_multiple", "string"),
        ("n1", "note", "string"),
        ("photo", "image", "binary"),
        ("rec", "audio", "binary"),
        ("doc", "file", "binary"),
        ("rk", "rank", "odk:rank"),
        ("rg", "range", "int"),
        ("ack", "trigger", "string"),
        ("total", "calculate", "string"),
        ("start", "metadata", "dateTime"),
        ("meta/instanceID", "metadata", "string"),
    ],
    ids=lambda v: str(v),
)
def test_controls(coop: FormSchema, path: str, control: str, bind_type: str) -> None:
    """XF3: the widget and bind type of each question."""
    field = coop.field_by_path(path)
    assert field is not None
    assert (field.control, field.bind_type) == (control, bind_type)


def test_binary_media_type(coop: FormSchema) -> None:
    """XF3: uploads keep their mediatype."""
    photo = coop.field_by_path("photo")
    assert photo is not None and photo.media_type == "image/*"


def test_translations(coop: FormSchema) -> None:
    """XF4: labels per language code, default language, names as written."""
    assert coop.languages == ("en", "fr")
    assert coop.default_language == "fr"
    assert dict(coop.language_names) == {"en": "English (en)", "fr": "Français (fr)"}
    region = coop.field_by_path("region")
    assert region is not None and dict(region.labels) == {"en": "Region", "fr": "Région"}


def test_untranslated_labels_use_empty_key() -> None:
    """XF4: an untranslated form keys labels by ""."""
    schema = md_schema(TREES_UPSERT)
    species = schema.field_by_path("species")
    assert species is not None and dict(species.labels) == {"": "Species"}
    assert schema.languages == ()


def test_choice_lists(places: FormSchema) -> None:
    """XF5: inline lists with labels and extra columns, file lists, filters."""
    district = places.choice_lists["district"]
    assert district.source == "inline"
    assert [(c.name, dict(c.labels), dict(c.extra)) for c in district.choices] == [
        ("d1", {"": "D1"}, {"region": "r1"}),
        ("d2", {"": "D2"}, {"region": "r2"}),
    ]
    field = places.field_by_path("district")
    assert field is not None and field.choice_list == "district"
    assert field.choice_filter == "region= /data/region"
    village = places.field_by_path("village")
    assert village is not None and village.choice_list == "villages"
    villages = places.choice_lists["villages"]
    assert (villages.source, villages.file_name) == ("file", "villages.csv")
    assert places.choice_lists["museums"].file_name == "museums.geojson"


def test_media(places: FormSchema) -> None:
    """XF6: files referenced by the form, with their kind."""
    assert set(places.media) == {
        MediaRef("villages.csv", "csv"),
        MediaRef("sites.xml", "xml"),
        MediaRef("museums.geojson", "geojson"),
        MediaRef("map.png", "image"),
    }


def test_entities_upsert_and_encryption() -> None:
    """XF7/XF8: create_if/update_if/entity_id/label from binds, saved properties, encryption."""
    schema = md_schema(TREES_UPSERT)
    (declaration,) = schema.entities
    assert declaration.list_name == "trees"
    assert declaration.create is not None and "= ''" in declaration.create
    assert declaration.update is not None and "!= ''" in declaration.update
    assert declaration.entity_id is not None and "/data/tid" in declaration.entity_id
    assert declaration.label is not None and "/data/species" in declaration.label
    assert dict(declaration.properties) == {"species": "species", "height": "height"}
    species = schema.field_by_path("species")
    assert species is not None and species.save_to == "species"
    assert MediaRef("trees.csv", "entity_list") in schema.media
    assert schema.encrypted


def test_instance_name(coop: FormSchema) -> None:
    """XF8: instance_name is the meta/instanceName calculation; unencrypted by default."""
    assert coop.instance_name == "concat( /data/coop , '-')"
    assert not coop.encrypted


def test_every_bind_has_a_field() -> None:
    """XF9: including entity attribute binds such as meta/entity/@id."""
    xform = md_xform(TREES_UPSERT)
    schema = parse_xform(xform)
    paths = {f.path for f in schema.fields}
    nodesets = [b.get("nodeset") for b in etree.fromstring(xform).iter("{http://www.w3.org/2002/xforms}bind")]
    assert "/data/meta/entity/@id" in nodesets
    assert all(str(n).split("/", 2)[2] in paths for n in nodesets)


def test_json_round_trip(coop: FormSchema) -> None:
    """XF10: to_json → JSON text → from_json gives an equal schema."""
    text = json.dumps(coop.to_json(), ensure_ascii=False)
    assert FormSchema.from_json(json.loads(text)) == coop
    for schema in (md_schema(PLACES), md_schema(TREES_UPSERT)):
        assert FormSchema.from_json(json.loads(json.dumps(schema.to_json()))) == schema


def test_xform_without_id_is_refused() -> None:
    """XF1: a primary instance without an id attribute is missing_form_id."""
    xform = md_xform(COOP).replace(b'id="coop_md"', b"")
    with pytest.raises(FormError) as info:
        parse_xform(xform)
    assert info.value.code == "missing_form_id"
