"""A synthetic programme for the demo, shaped like the ones Fieldsync serves, and its indicators.

``fieldsync demo`` loads it so that ``make run`` opens on a dashboard a programme officer recognises:
about 4,230 direct beneficiaries over Morocco's 12 regions (48 % women, 64 % rural, 53 % NEET youth),
three named programmes (Al Montija: 50 rural women of Bouizate and Ouled Salmane, Safi; Women
Empowerment Center: 180 OFPPT trainees and 50 women in Khouribga; Femmpact: 60 young women in Côte
d'Ivoire and Senegal), 705 cooperatives with 3,525 members, and 412 women entrepreneurs followed. The
generator is seeded, so every load makes the same submissions with the same instanceIDs: a second
load finds them stored and adds nothing. Submissions go through the same ingestion service as a
phone's push, never straight into the tables.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from typing import Any
from xml.sax.saxutils import escape

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.auth import Principal
from server.db.models import User
from server.db.models.submissions import Submission
from server.db.queries import exports as export_q
from server.db.transaction import transaction
from server.services import indicators as indicators_svc
from server.services import submissions as submissions_svc
from server.services.submission_batches import BulkItem, ingest_submissions_bulk

SEED = 2026
BENEFICIARIES = 4230
COOPERATIVES = 705
COOP_MEMBERS = 3525
ENTREPRENEURS = 412
SHARE_WOMEN, SHARE_RURAL, SHARE_NEET = 0.48, 0.64, 0.53
BATCH = 200

BENEFICIARY_FORM = ("beneficiary_registration", "2026120201")
COOP_FORM = ("coop_diagnostic", "2026112901")
ENTREPRENEUR_FORM = ("entrepreneur_followup", "2026112901")

# Region weights of the programmes' other beneficiaries: the rural regions weigh more.
REGION_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("tanger_tetouan_al_hoceima", 8),
    ("oriental", 7),
    ("fes_meknes", 9),
    ("rabat_sale_kenitra", 7),
    ("beni_mellal_khenifra", 11),
    ("casablanca_settat", 8),
    ("marrakech_safi", 13),
    ("draa_tafilalet", 11),
    ("souss_massa", 11),
    ("guelmim_oued_noun", 6),
    ("laayoune_sakia_el_hamra", 5),
    ("dakhla_oued_ed_dahab", 4),
)
FIRST_NAMES_F = ("Fatima", "Khadija", "Aicha", "Zineb", "Salma", "Hanane", "Naima", "Meryem", "Imane", "Rachida")
FIRST_NAMES_M = ("Mohamed", "Youssef", "Ahmed", "Hamza", "Omar", "Rachid", "Said", "Mustapha", "Ayoub", "Karim")
LAST_NAMES = ("El Amrani", "Benali", "Ouhaddou", "Aït Lahcen", "Bennani", "Tazi", "Idrissi", "Lahlou", "Amzil")
COMMUNES = {
    "marrakech_safi": ("Bouizate", "Ouled Salmane", "Chichaoua", "Essaouira"),
    "beni_mellal_khenifra": ("Khouribga", "Azilal", "Béni Mellal", "Fquih Ben Salah"),
}
ENTREPRENEUR_PROGRAMMES = (("indh_p3", 170), ("forsa", 120), ("intelaka", 72), ("local_incubator", 50))


def _instance(rng: random.Random) -> str:
    return f"uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def _xml(form: tuple[str, str], body: str, instance_id: str) -> bytes:
    form_id, version = form
    return (
        f'<data xmlns:orx="http://openrosa.org/xforms" id="{form_id}" version="{version}">{body}'
        f"<meta><instanceID>{instance_id}</instanceID></meta></data>"
    ).encode()


def _leaf(name: str, value: Any) -> str:
    return f"<{name}>{escape(str(value))}</{name}>" if value not in (None, "") else f"<{name}/>"


def _flags(rng: random.Random, count: int, true_count: int) -> list[bool]:
    """``count`` flags of which exactly ``true_count`` are true, in a random order."""
    true_count = max(0, min(count, true_count))
    flags = [True] * true_count + [False] * (count - true_count)
    rng.shuffle(flags)
    return flags


def _enrolled(rng: random.Random) -> str:
    return (date(2025, 1, 6) + timedelta(days=rng.randrange(0, 690))).isoformat()


def beneficiary_submissions(seed: int = SEED) -> list[tuple[str, bytes]]:
    """The programme's beneficiaries as (instanceID, XML): the named cohorts, then everyone else."""
    rng = random.Random(f"{seed}:beneficiaries")
    people: list[dict[str, Any]] = []
    for index in range(50):
        commune = ("Bouizate", "Ouled Salmane")[index % 2]
        people.append(
            {"sex": "female", "area": "rural", "region": "marrakech_safi", "commune": commune,
             "programme": "al_montija", "age": rng.randint(22, 55)}
        )  # fmt: skip
    for index in range(230):
        trainee = index < 180
        people.append(
            {"sex": "female", "area": "urban", "region": "beni_mellal_khenifra", "commune": "Khouribga",
             "programme": "women_empowerment_center", "age": rng.randint(18, 24) if trainee else rng.randint(25, 50)}
        )  # fmt: skip
    for _ in range(60):  # Côte d'Ivoire and Senegal: no Moroccan region
        people.append({"sex": "female", "area": "urban", "region": "", "commune": "", "programme": "femmpact",
                       "age": rng.randint(18, 30)})  # fmt: skip
    rest = BENEFICIARIES - len(people)
    # The named cohorts are all women, 50 of them rural: the others make up the programme's shares.
    women = _flags(rng, rest, round(SHARE_WOMEN * BENEFICIARIES) - len(people))
    rural = _flags(rng, rest, round(SHARE_RURAL * BENEFICIARIES) - 50)
    regions = [name for name, weight in REGION_WEIGHTS for _ in range(weight)]
    for index in range(rest):
        region = rng.choice(regions)
        people.append(
            {
                "sex": "female" if women[index] else "male",
                "area": "rural" if rural[index] else "urban",
                "region": region,
                "commune": rng.choice(COMMUNES.get(region, ("",))),
                "programme": rng.choice(("cooperatives", "youth_employability")),
                "age": rng.randint(16, 45),
            }
        )
    neet = _flags(rng, len(people), round(SHARE_NEET * BENEFICIARIES))
    out = []
    for person, is_neet in zip(people, neet, strict=True):
        first = rng.choice(FIRST_NAMES_F if person["sex"] == "female" else FIRST_NAMES_M)
        body = (
            "<beneficiary>"
            + _leaf("full_name", f"{first} {rng.choice(LAST_NAMES)}")
            + _leaf("sex", person["sex"])
            + _leaf("age", person["age"])
            + _leaf("neet", "yes" if is_neet else "no")
            + "</beneficiary><location>"
            + _leaf("region", person["region"])
            + _leaf("area", person["area"])
            + _leaf("commune", person["commune"])
            + "</location>"
            + _leaf("programme", person["programme"])
            + _leaf("enrolled_on", _enrolled(rng))
        )
        instance = _instance(rng)
        out.append((instance, _xml(BENEFICIARY_FORM, body, instance)))
    return out


def cooperative_submissions(seed: int = SEED) -> list[tuple[str, bytes]]:
    """The cooperatives' strategic diagnostics: region and members (3,525 in all), as (instanceID, XML)."""
    rng = random.Random(f"{seed}:cooperatives")
    members = [1] * COOPERATIVES  # every cooperative has at least one member; spread the others
    for _ in range(COOP_MEMBERS - COOPERATIVES):
        members[rng.randrange(COOPERATIVES)] += 1
    regions = [name for name, weight in REGION_WEIGHTS for _ in range(weight)]
    out = []
    for index, total in enumerate(members):
        women_share = rng.choice((0, 25, 50, 60, 75, 100))
        body = (
            "<identification>"
            + _leaf("coop_name", f"Coopérative {index + 1:03d}")
            + _leaf("legal_form", "cooperative")
            + "</identification><location>"
            + _leaf("region", rng.choice(regions))
            + _leaf("commune_type", rng.choice(("rural", "rural", "urban")))
            + "</location><members>"
            + _leaf("members_total", total)
            + _leaf("women_share", women_share)
            + _leaf("women_members", round(total * women_share / 100))
            + "</members>"
        )
        instance = _instance(rng)
        out.append((instance, _xml(COOP_FORM, body, instance)))
    return out


def entrepreneur_submissions(seed: int = SEED) -> list[tuple[str, bytes]]:
    """First visits of the women entrepreneurs followed (each creates her entity), as (instanceID, XML)."""
    rng = random.Random(f"{seed}:entrepreneurs")
    out = []
    for programme, count in ENTREPRENEUR_PROGRAMMES:
        for _ in range(count):
            name = f"{rng.choice(FIRST_NAMES_F)} {rng.choice(LAST_NAMES)}"
            entity = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            body = (
                "<profile>"
                + _leaf("visit_kind", "new")
                + _leaf("full_name", name)
                + _leaf("new_entrepreneur_id", entity)
                + _leaf("entrepreneur_name", name)
                + _leaf("commune", rng.choice(("Azilal", "Safi", "Khouribga", "Ouarzazate")))
                + _leaf("programme", programme)
                + "</profile>"
            )
            instance = _instance(rng)
            out.append((instance, _xml(ENTREPRENEUR_FORM, body, instance)))
    return out


def _ingest(session: Session, project_id: int, principal: Principal, items: Sequence[tuple[str, bytes]]) -> int:
    """Store the items a batch at a time (the bulk path, then one by one for what it left); return the count."""
    stored = 0
    for start in range(0, len(items), BATCH):
        chunk = items[start : start + BATCH]
        with transaction(session):
            results = ingest_submissions_bulk(
                session,
                project_id=project_id,
                items=[BulkItem(xml, instance_id=instance) for instance, xml in chunk],
                principal=principal,
                device_id="fieldsync:demo",
            )
            for (_, xml), result in zip(chunk, results, strict=True):
                if result is None:
                    submissions_svc.ingest_submission(
                        session,
                        project_id=project_id,
                        xml=xml,
                        files={},
                        principal=principal,
                        device_id="fieldsync:demo",
                        source="push",
                        nested=True,
                    )
                stored += 1
    return stored


def _region(label_fr: str, label_ar: str, label_en: str) -> dict[str, str]:
    return {"fr": label_fr, "ar": label_ar, "en": label_en}


REGION, AREA, SEX, PROGRAMME = "location/region", "location/area", "beneficiary/sex", "programme"
INDICATORS: dict[str, dict[str, Any]] = {
    "beneficiaries": {
        "title": _region("Bénéficiaires directs", "المستفيدون المباشرون", "Direct beneficiaries"),
        "source": {"form": BENEFICIARY_FORM[0]},
        "measure": {"kind": "count"},
        "breakdowns": [REGION, PROGRAMME, AREA, SEX],
        "target": 4200,
        "date_field": "enrolled_on",
    },
    "women_share": {
        "title": _region("Part des femmes", "نسبة النساء", "Share of women"),
        "source": {"form": BENEFICIARY_FORM[0]},
        "measure": {"kind": "share", "where": [{"field": SEX, "op": "eq", "value": "female"}]},
        "breakdowns": [REGION, PROGRAMME, AREA],
        "target": 0.48,
        "date_field": "enrolled_on",
    },
    "rural_share": {
        "title": _region("Part du milieu rural", "نسبة الوسط القروي", "Share from rural areas"),
        "source": {"form": BENEFICIARY_FORM[0]},
        "measure": {"kind": "share", "where": [{"field": AREA, "op": "eq", "value": "rural"}]},
        "breakdowns": [REGION, PROGRAMME, SEX],
        "target": 0.64,
        "date_field": "enrolled_on",
    },
    "neet_share": {
        "title": _region("Part des jeunes NEET", "نسبة الشباب خارج الشغل والدراسة والتكوين", "Share of NEET youth"),
        "source": {"form": BENEFICIARY_FORM[0]},
        "measure": {"kind": "share", "where": [{"field": "beneficiary/neet", "op": "eq", "value": "yes"}]},
        "breakdowns": [REGION, PROGRAMME, SEX, AREA],
        "target": 0.53,
        "date_field": "enrolled_on",
    },
    "cooperatives": {
        "title": _region("Coopératives accompagnées", "التعاونيات المواكبة", "Cooperatives followed"),
        "source": {"form": COOP_FORM[0]},
        "measure": {"kind": "count"},
        "breakdowns": [REGION],
        "target": 700,
    },
    "cooperative_members": {
        "title": _region("Membres des coopératives", "أعضاء التعاونيات", "Cooperative members"),
        "source": {"form": COOP_FORM[0]},
        "measure": {"kind": "sum", "field": "members/members_total"},
        "breakdowns": [REGION],
        "target": 3500,
    },
    "women_entrepreneurs": {
        "title": _region("Femmes entrepreneures suivies", "النساء المقاولات المتتبعات", "Women entrepreneurs followed"),
        "source": {"form": ENTREPRENEUR_FORM[0]},
        "measure": {"kind": "distinct", "field": "profile/new_entrepreneur_id"},
        "filters": [{"field": "profile/visit_kind", "op": "eq", "value": "new"}],
        "breakdowns": ["profile/programme"],
        "target": 400,
    },
}


def load_programme(session: Session, project_id: int) -> Iterator[str]:
    """Load the synthetic programme's submissions (once) and its indicator definitions (idempotent)."""
    coach = session.scalars(select(User).where(User.username == "coach")).one_or_none()
    if coach is None:
        yield "programme: no demo coach to submit as; skipped"
        return
    principal = Principal("user", coach.id, coach.username)
    for (form_id, _), make in (
        (BENEFICIARY_FORM, beneficiary_submissions),
        (COOP_FORM, cooperative_submissions),
        (ENTREPRENEUR_FORM, entrepreneur_submissions),
    ):
        form = export_q.get_form(session, project_id, form_id)
        if form is None:
            yield f"programme: form {form_id} is not published; its data was not loaded"
            continue
        present = session.scalar(select(func.count()).select_from(Submission).where(Submission.form_id == form.id))
        session.rollback()  # end the read (SQLite holds its write lock in a transaction)
        if present:
            yield f"programme: {form_id} already has {present:,} submissions"
            continue
        count = _ingest(session, project_id, principal, make())
        yield f"programme: {form_id}: {count:,} synthetic submissions loaded"
    for name, body in INDICATORS.items():
        indicators_svc.save_indicator(session, project_id, name, body, "demo")
    yield f"programme: {len(INDICATORS)} indicators defined (figures at /v1/projects/{project_id}/indicators/<name>)"
