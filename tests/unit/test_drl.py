"""DRL table: only confirmed values shipped, validation messages, comparisons and their edge cases, hot reload,
and the local-DRL method on hand-computed examples."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from streams.dose import ExamDose, PhantomCtdi
from streams.drl import (
    DEFAULT_DRL_PATH,
    DrlError,
    DrlWatcher,
    compare,
    load_drls,
    local_drls,
    percentile_linear,
)
from streams.examtypes import load_rules

RULES = load_rules()
DRL_KEYS = {t.drl_key for t in RULES.types.values() if t.drl_key}

# The oracle: domain notes §4.2, transcribed by hand. (exam type, quantity) → value.
UK_2022 = {
    ("CT_HEAD", "CTDIVOL"): 47,
    ("CT_HEAD", "DLP"): 790,
    ("CT_SINUS", "CTDIVOL"): 12,
    ("CT_SINUS", "DLP"): 160,
    ("CT_CERVICAL_SPINE", "CTDIVOL"): 16,
    ("CT_CERVICAL_SPINE", "DLP"): 400,
    ("CT_CHEST", "CTDIVOL"): 8.5,
    ("CT_CHEST", "DLP"): 290,
    ("CT_CHEST_HRCT", "CTDIVOL"): 8,
    ("CT_CHEST_HRCT", "DLP"): 300,
    ("CTPA", "CTDIVOL"): 9.1,
    ("CTPA", "DLP"): 310,
    ("CT_ABDOMEN_PELVIS", "CTDIVOL"): 10,
    ("CT_ABDOMEN_PELVIS", "DLP"): 530,
    ("CT_KUB", "CTDIVOL"): 6.3,
    ("CT_KUB", "DLP"): 290,
    ("CT_CHEST_ABDOMEN", "DLP"): 470,
    ("CT_CHEST_ABDOMEN_PELVIS", "DLP"): 660,
    ("CT_NECK_CHEST_ABDOMEN_PELVIS", "DLP"): 850,
    ("CT_COLONOGRAPHY", "DLP"): 690,
    ("CT_UROGRAM", "DLP"): 890,
}
IE_2012 = {
    ("CT_HEAD", "DLP"): 940,
    ("CT_SINUS", "CTDIVOL"): 16,
    ("CT_SINUS", "DLP"): 210,
    ("CT_CERVICAL_SPINE", "CTDIVOL"): 19,
    ("CT_CERVICAL_SPINE", "DLP"): 420,
    ("CT_CHEST", "DLP"): 390,
    ("CT_CHEST_HRCT", "CTDIVOL"): 7,
    ("CT_CHEST_HRCT", "DLP"): 280,
    ("CTPA", "CTDIVOL"): 13,
    ("CTPA", "DLP"): 430,
    ("CT_ABDOMEN_MULTIPHASE", "CTDIVOL"): 13,
    ("CT_ABDOMEN_MULTIPHASE", "DLP"): 1120,
    ("CT_ABDOMEN_PELVIS", "CTDIVOL"): 12,
    ("CT_ABDOMEN_PELVIS", "DLP"): 600,
    ("CT_CHEST_ABDOMEN_PELVIS", "DLP"): 850,
}

HEADER = "table_id,exam_type,quantity,value,unit,phantom,per,population,percentile,source,year,note\n"


def dose(**kw) -> ExamDose:
    base = {"exam_key": "x", "site_id": "s", "modality": "CT", "source": "REPORT"}
    return ExamDose(**{**base, **kw})


def ct_dose(ctdivol: float | None, dlp: float | None, phantom: str | None = "HEAD16", mean: float | None = None):
    groups = () if ctdivol is None else (PhantomCtdi(phantom, ctdivol, mean or ctdivol, 1),)
    return dose(
        ctdivol_max_mgy=ctdivol,
        ctdivol_phantom=phantom,
        ctdivol_mean_mgy=mean or ctdivol,
        ctdivol_by_phantom=groups,
        dlp_total_mgy_cm=dlp,
        dlp_phantom=phantom if dlp is not None else None,
    )


def write(tmp_path: Path, body: str, name: str = "drl.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return path


# --- the shipped table ---------------------------------------------------------------------------------------


def test_default_table_ships_exactly_the_confirmed_values() -> None:
    both = load_drls(active=("UK-NDRL-2022", "IE-2012"), known_exam_types=DRL_KEYS)
    shipped = {t: {(r.exam_type, r.quantity): r.value for r in both.rows if r.table_id == t} for t in both.active}
    assert shipped["UK-NDRL-2022"] == UK_2022
    assert shipped["IE-2012"] == IE_2012
    assert all(r.percentile == "P75" and r.population == "adult" for r in both.rows)
    assert all(r.per == ("SEQUENCE" if r.quantity == "CTDIVOL" else "EXAM") for r in both.rows)
    uk = [r for r in both.rows if r.table_id == "UK-NDRL-2022"]
    assert {r.year for r in uk} == {2022} and {r.unit for r in uk} == {"mGy", "mGy·cm"}


def test_china_rows_are_placeholders_and_ignored() -> None:
    table = load_drls()
    assert table.active == ("UK-NDRL-2022",) and "CN-WST637-2018" in table.available
    assert table.placeholders == 24 and all(r.table_id == "UK-NDRL-2022" for r in table.rows)
    cn = [line for line in DEFAULT_DRL_PATH.read_text(encoding="utf-8").splitlines() if line.startswith("CN-")]
    assert cn and all(line.split(",")[3] == "" for line in cn)
    with pytest.raises(DrlError, match=r"only empty values.*fill in the values"):
        load_drls(active=("CN-WST637-2018",))


def test_unknown_active_table_is_named_with_a_suggestion() -> None:
    with pytest.raises(DrlError, match=r"'UK-NDRL-2021' is not in the file \(did you mean 'UK-NDRL-2022'\?\)"):
        load_drls(active=("UK-NDRL-2021",))


# --- comparisons ---------------------------------------------------------------------------------------------


def test_above_the_drl_exceeds_with_ratio_unit_and_source() -> None:
    table = load_drls()
    result = compare(ct_dose(50.0, 395.0), "CT_HEAD", table)
    by_q = {c.quantity: c for c in result}
    assert by_q["CTDIVOL"].exceeds and by_q["CTDIVOL"].ratio == pytest.approx(50 / 47)
    assert not by_q["DLP"].exceeds and by_q["DLP"].ratio == pytest.approx(0.5)
    assert by_q["DLP"].unit == "mGy·cm" and by_q["DLP"].table_id == "UK-NDRL-2022" and "UKHSA" in by_q["DLP"].source


def test_exactly_at_the_drl_is_not_an_exceedance() -> None:
    result = compare(ct_dose(47.0, 790.0), "CT_HEAD", load_drls())
    assert [(c.quantity, c.exceeds, c.ratio) for c in result] == [("CTDIVOL", False, 1.0), ("DLP", False, 1.0)]
    assert compare(ct_dose(47.0001, None), "CT_HEAD", load_drls())[0].exceeds


def test_missing_quantity_gives_no_comparison() -> None:
    table = load_drls()
    assert [c.quantity for c in compare(ct_dose(None, 800.0), "CT_HEAD", table)] == ["DLP"]
    assert compare(dose(source="NONE"), "CT_HEAD", table) == []


def test_unmapped_and_unknown_types_give_no_comparison() -> None:
    table = load_drls()
    assert compare(ct_dose(99.0, 9999.0), "UNMAPPED", table) == []
    assert compare(ct_dose(99.0, 9999.0), None, table) == []
    assert compare(ct_dose(99.0, 9999.0), "CT_RT_PLANNING", table) == []


def test_phantom_mismatch_gives_no_ctdivol_comparison() -> None:
    table = load_drls()
    body = ct_dose(30.0, 900.0, phantom="BODY32")  # a head exam reported against the 32 cm phantom
    assert compare(body, "CT_HEAD", table) == []  # CTDIvol: mismatch; DLP: definite mismatch too
    unknown = ct_dose(30.0, 900.0, phantom=None)
    assert [c.quantity for c in compare(unknown, "CT_HEAD", table)] == ["DLP"]  # unknown phantom: DLP still compared


def test_ctdivol_for_the_rows_phantom_is_used_when_an_exam_has_both() -> None:
    mixed = dose(
        ctdivol_max_mgy=176.0,
        ctdivol_phantom="BODY32",
        ctdivol_mean_mgy=60.0,
        dlp_phantom="MIXED",
        ctdivol_by_phantom=(PhantomCtdi("BODY32", 176.0, 60.0, 3), PhantomCtdi("HEAD16", 40.0, 30.0, 2)),
        dlp_total_mgy_cm=700.0,
    )
    by_q = {c.quantity: c for c in compare(mixed, "CT_HEAD", load_drls())}
    assert by_q["CTDIVOL"].value == 40.0 and not by_q["CTDIVOL"].exceeds
    assert by_q["DLP"].value == 700.0


def test_active_tables_each_give_their_comparison() -> None:
    table = load_drls(active=("UK-NDRL-2022", "IE-2012"))
    dlp = [(c.table_id, c.drl_value) for c in compare(ct_dose(None, 800.0), "CT_HEAD", table)]
    assert dlp == [("UK-NDRL-2022", 790.0), ("IE-2012", 940.0)]


def test_exam_level_ctdivol_and_projection_quantities(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "T,CT_X,CTDIVOL,10,mGy,,EXAM,adult,P75,test,2024,\n"
        "T,DX_CHEST_PA,DAP,0.1,Gy·cm²,,EXAM,adult,P75,test,2024,\n"
        "T,MG_SCREENING,AGD,2.5,mGy,,EXAM,adult,P75,test,2024,\n"
        "T,RF_GENERIC,FLUORO_TIME,300,s,,EXAM,adult,P75,test,2024,\n"
        "T,RF_GENERIC,DOSE_RP,100,mGy,,EXAM,adult,P75,test,2024,\n"
        "T,RF_GENERIC,DAP,20,Gy.cm2,,EXAM,adult,P50,test,2024,\n",
    )
    table = load_drls(path, active=("T",))
    assert compare(ct_dose(30.0, None, phantom=None, mean=9.0), "CT_X", table)[0].value == 9.0  # mean, not max
    assert compare(dose(dap_total_gy_cm2=0.12), "DX_CHEST_PA", table)[0].exceeds
    mg = compare(dose(agd_left_mgy=2.6, agd_right_mgy=1.9), "MG_SCREENING", table)[0]
    assert mg.value == 2.6 and mg.exceeds
    rf = compare(dose(fluoro_time_s=120.0, dose_rp_mgy=150.0, dap_total_gy_cm2=30.0), "RF_GENERIC", table)
    assert [(c.quantity, c.exceeds) for c in rf] == [("FLUORO_TIME", False), ("DOSE_RP", True)]  # P50 row skipped
    assert len(compare(dose(dap_total_gy_cm2=30.0), "RF_GENERIC", table, percentiles=("P50",))) == 1


# --- validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "column", "fix"),
    [
        ("T,CT_HEAD,DLP,790,mGy cm2,,EXAM,adult,P75,s,2022,", "unit", "convert the value to mGy·cm"),
        ("T,CT_HEAD,DLP,790,mGy,,EXAM,adult,P75,s,2022,", "unit", "write mGy·cm"),
        ("T,CT_HEAD,DLPP,790,mGy,,EXAM,adult,P75,s,2022,", "quantity", "did you mean 'DLP'"),
        ("T,CT_HEAD,DLP,-3,mGy·cm,,EXAM,adult,P75,s,2022,", "value", "must be positive"),
        ("T,CT_HEAD,DLP,abc,mGy·cm,,EXAM,adult,P75,s,2022,", "value", "is not a number"),
        ("T,CT_HEAD,DLP,790,mGy·cm,HEAD18,EXAM,adult,P75,s,2022,", "phantom", "HEAD16 or BODY32"),
        ("T,CT_HEAD,DAP,7,Gy·cm²,HEAD16,EXAM,adult,P75,s,2022,", "phantom", "leave it empty"),
        ("T,CT_HEAD,DLP,790,mGy·cm,,SEQUENCE,adult,P75,s,2022,", "per", "['EXAM']"),
        ("T,CT_HEAD,DLP,790,mGy·cm,,EXAM,adult,Q3,s,2022,", "percentile", "P75"),
        ("T,CT_HEAD,DLP,790,mGy·cm,,EXAM,adult,P75,s,22,", "year", "four digits"),
        ("T,CT_HEAD,DLP,790,mGy·cm,,EXAM,adult,P75,,2022,", "source", "name the publication"),
        ("T,CT_HEDA,DLP,790,mGy·cm,,EXAM,adult,P75,s,2022,", "exam_type", "did you mean 'CT_HEAD'"),
    ],
)
def test_validation_names_row_column_and_fix(tmp_path: Path, row: str, column: str, fix: str) -> None:
    path = write(tmp_path, "# a comment line keeps line numbers honest\n" + row + "\n")
    with pytest.raises(DrlError) as err:
        load_drls(path, active=("T",), known_exam_types=DRL_KEYS)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3, column {column!r}:") and fix in msg, msg


def test_duplicates_and_headers_are_rejected(tmp_path: Path) -> None:
    row = "T,CT_HEAD,DLP,790,mGy·cm,,EXAM,adult,P75,s,2022,\n"
    with pytest.raises(DrlError, match=r":3: duplicates line 2"):
        load_drls(write(tmp_path, row + row), active=("T",))
    bad = tmp_path / "bad.csv"
    bad.write_text("table_id,exam_type,quantity,value\nT,CT_HEAD,DLP,790\n", encoding="utf-8")
    with pytest.raises(DrlError, match=r"bad.csv:1: header lacks \['unit'"):
        load_drls(bad, active=("T",))


# --- hot reload ----------------------------------------------------------------------------------------------


def _touch(path: Path, text: str, tick: int) -> None:
    path.write_text(HEADER + text, encoding="utf-8")
    stamp = 1_700_000_000_000_000_000 + tick * 1_000_000_000  # explicit mtimes: coarse clocks can't hide an edit
    os.utime(path, ns=(stamp, stamp))


def test_hot_reload_picks_up_edits_and_keeps_the_last_good_table(tmp_path: Path) -> None:
    path = tmp_path / "drl.csv"
    _touch(path, "T,CT_HEAD,DLP,790,mGy·cm,,EXAM,adult,P75,s,2022,\n", 0)
    errors: list[str] = []
    watcher = DrlWatcher(path, active=("T",), on_error=errors.append)
    assert watcher.current().lookup("CT_HEAD")[0].value == 790

    _touch(path, "T,CT_HEAD,DLP,700,mGy·cm,,EXAM,adult,P75,s,2022,\n", 1)
    assert watcher.current().lookup("CT_HEAD")[0].value == 700 and watcher.reloads == 1

    _touch(path, "T,CT_HEAD,DLP,seven hundred,mGy·cm,,EXAM,adult,P75,s,2022,\n", 2)
    kept = watcher.current()
    assert kept.lookup("CT_HEAD")[0].value == 700
    assert watcher.last_error and "column 'value'" in watcher.last_error and errors == [watcher.last_error]
    assert watcher.current() is kept and len(errors) == 1  # reported once, not on every call

    _touch(path, "T,CT_HEAD,DLP,650,mGy·cm,,EXAM,adult,P75,s,2022,\n", 3)
    assert watcher.current().lookup("CT_HEAD")[0].value == 650 and watcher.last_error is None


def test_hot_reload_survives_a_deleted_file(tmp_path: Path) -> None:
    path = tmp_path / "drl.csv"
    _touch(path, "T,CT_HEAD,DLP,790,mGy·cm,,EXAM,adult,P75,s,2022,\n", 0)
    watcher = DrlWatcher(path, active=("T",), on_error=lambda _m: None)
    path.unlink()
    assert watcher.current().lookup("CT_HEAD")[0].value == 790 and "cannot read" in (watcher.last_error or "")


def test_first_load_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(DrlError):
        DrlWatcher(write(tmp_path, "T,CT_HEAD,DLP,x,mGy·cm,,EXAM,adult,P75,s,2022,\n"), active=("T",))


# --- local DRLs ----------------------------------------------------------------------------------------------


def test_local_drl_hand_computed() -> None:
    rows = [
        *[("A", "CT_HEAD", "DLP", v) for v in (900, 1000, 1100, 1000)],  # median 1000
        *[("B", "CT_HEAD", "DLP", v) for v in (600, 700, 800)],  # median 700
        *[("C", "CT_HEAD", "DLP", v) for v in (400, 500, 520, 560, 900)],  # median 520
        *[("D", "CT_HEAD", "DLP", v) for v in (100, 2000)],  # 2 exams < min_exams: left out
        ("A", "CT_HEAD", "DLP", None),  # no value: skipped
        ("A", "UNMAPPED", "DLP", 5000.0),  # unmapped: skipped
    ]
    [result] = local_drls(rows, min_exams=3)
    # device medians sorted: 520, 700, 1000; P75 at rank (3-1)·0.75 = 1.5 → 700 + 0.5·(1000-700) = 850
    assert result.p75_of_device_medians == pytest.approx(850.0)
    assert result.p50 == pytest.approx(700.0)
    assert (result.exam_type, result.quantity, result.n_devices, result.n_exams) == ("CT_HEAD", "DLP", 3, 12)


def test_percentile_matches_numpy_default() -> None:
    for values in ([6.0, 12.0, 21.0, 30.0], [3.0], [5.0, 1.0, 4.0, 4.0, 9.0, 2.5], list(range(17))):
        for q in (25, 50, 75, 90):
            assert percentile_linear(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile_linear([6, 12, 21, 30], 75) == pytest.approx(23.25)  # rank 2.25: 21 + 0.25·9


def test_default_minimum_is_ten_exams_per_device() -> None:
    rows = [("A", "CT_CHEST", "DLP", 300.0)] * 10 + [("B", "CT_CHEST", "DLP", 500.0)] * 9
    [result] = local_drls(rows)
    assert (result.n_devices, result.p75_of_device_medians) == (1, 300.0)
    assert local_drls(rows[10:]) == []
