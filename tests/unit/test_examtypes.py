"""Exam-type mapping: golden table (English, Chinese, vendor samples), tiers, hashing, RPIDs and rule-file errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.examtypes import (
    DEFAULT_RULES_PATH,
    UNMAPPED,
    RulesError,
    basic_tokens,
    classify,
    load_rules,
)

RULES = load_rules()

# (modality, study description, expected exam type)
GOLDEN: list[tuple[str, str, str]] = [
    # --- CT, Chinese
    ("CT", "胸部CT平扫", "CT_CHEST"),
    ("CT", "头颅CT平扫", "CT_HEAD"),
    ("CT", "颅脑CT平扫", "CT_HEAD"),
    ("CT", "冠脉CTA", "CTA_CORONARY"),
    ("CT", "冠状动脉CT血管成像", "CTA_CORONARY"),
    ("CT", "胸腹盆增强", "CT_CHEST_ABDOMEN_PELVIS"),
    ("CT", "胸部+全腹CT", "CT_CHEST_ABDOMEN_PELVIS"),
    ("CT", "全腹CT增强", "CT_ABDOMEN_PELVIS"),
    ("CT", "腹盆腔CT平扫+增强", "CT_ABDOMEN_PELVIS"),
    ("CT", "上腹部CT增强", "CT_ABDOMEN"),
    ("CT", "胸部低剂量CT", "CT_CHEST_LOWDOSE"),
    ("CT", "肺癌筛查低剂量CT", "CT_CHEST_LOWDOSE"),
    ("CT", "肺动脉CTA", "CTPA"),
    ("CT", "主动脉CTA", "CTA_AORTA"),
    ("CT", "头颈CTA", "CTA_HEAD_NECK"),
    ("CT", "腰椎间盘CT", "CT_LUMBAR_SPINE"),
    ("CT", "颈椎CT平扫", "CT_CERVICAL_SPINE"),
    ("CT", "鼻窦CT平扫", "CT_SINUS"),
    ("CT", "颈部软组织CT", "CT_NECK"),
    ("CT", "泌尿系CT平扫", "CT_KUB"),
    ("CT", "头颅CT灌注", "CT_HEAD_PERFUSION"),
    # --- CT, English
    ("CT", "CT CAP W", "CT_CHEST_ABDOMEN_PELVIS"),
    ("CT", "CT HEAD WO", "CT_HEAD"),
    ("CT", "LOW DOSE CHEST", "CT_CHEST_LOWDOSE"),
    ("CT", "CTA CORONARY", "CTA_CORONARY"),
    ("CT", "CT BRAIN NON-CONTRAST", "CT_HEAD"),
    ("CT", "Head^Routine", "CT_HEAD"),
    ("CT", "LDCT LUNG SCREENING", "CT_CHEST_LOWDOSE"),
    ("CT", "Thorax^LowDose", "CT_CHEST_LOWDOSE"),
    ("CT", "CT THORAX", "CT_CHEST"),
    ("CT", "CHEST W/O", "CT_CHEST"),
    ("CT", "CT ABD/PEL W", "CT_ABDOMEN_PELVIS"),
    ("CT", "CT THORAX ABDOMEN PELVIS C+", "CT_CHEST_ABDOMEN_PELVIS"),
    ("CT", "CT Thorax abdomen and pelvis with contrast", "CT_CHEST_ABDOMEN_PELVIS"),
    ("CT", "Cardio^CaScore+CTA", "CTA_CORONARY"),
    ("CT", "CT CALCIUM SCORE HEART", "CT_CARDIAC_CALCIUM"),
    ("CT", "CTPA", "CTPA"),
    ("CT", "CT PULMONARY ANGIOGRAM", "CTPA"),
    ("CT", "CT CHEST PE PROTOCOL", "CTPA"),
    ("CT", "CTA AORTA", "CTA_AORTA"),
    ("CT", "CTA HEAD", "CTA_HEAD"),
    ("CT", "CTA CAROTIDS", "CTA_NECK"),
    ("CT", "CT L-SPINE", "CT_LUMBAR_SPINE"),
    ("CT", "CT C-SPINE WO", "CT_CERVICAL_SPINE"),
    ("CT", "CT SINUS", "CT_SINUS"),
    ("CT", "CT PARANASAL SINUSES", "CT_SINUS"),
    ("CT", "CT NECK C+", "CT_NECK"),
    ("CT", "CT KUB", "CT_KUB"),
    ("CT", "CT UROGRAM", "CT_UROGRAM"),
    ("CT", "CT COLONOGRAPHY", "CT_COLONOGRAPHY"),
    ("CT", "HRCT CHEST", "CT_CHEST_HRCT"),
    ("CT", "CT ABDOMEN", "CT_ABDOMEN"),
    ("CT", "CT ABDOMEN TRIPHASIC", "CT_ABDOMEN_MULTIPHASE"),
    ("CT", "CT PELVIS", "CT_PELVIS"),
    ("CT", "CT CHEST ABDOMEN", "CT_CHEST_ABDOMEN"),
    ("CT", "CT NECK CHEST ABDOMEN PELVIS", "CT_NECK_CHEST_ABDOMEN_PELVIS"),
    ("CT", "CT KNEE", "CT_EXTREMITY"),
    ("CT", "ＣＴ　ＨＥＡＤ", "CT_HEAD"),  # full-width, folded by NFKC
    # --- CT, vendor samples
    ("CT", "Thorax^TAP (Adult)", "CT_CHEST_ABDOMEN_PELVIS"),  # Siemens Flash
    ("CT", "FACIAL BONES", "CT_FACIAL_BONES"),  # GE LightSpeed VCT
    ("CT", "Thorax^RTP_4DCT_Thorax_C (Adult)", "CT_RT_PLANNING"),  # Siemens Confidence, RT planning 4D CT
    # --- radiography
    ("DX", "腰椎正侧位", "DX_SPINE_LUMBAR"),
    ("DX", "CHEST PA", "DX_CHEST_PA"),
    ("DX", "ABD 1 VIEW", "DX_ABDOMEN"),
    ("CR", "CR THORAX", "DX_CHEST"),  # Canon CXDI sample: no view stated
    ("DX", "CHEST PA LAT", "DX_CHEST_PA_LAT"),
    ("DX", "胸部正侧位", "DX_CHEST_PA_LAT"),
    ("DX", "胸部正位", "DX_CHEST_PA"),
    ("DX", "XR CHEST 2 VIEWS", "DX_CHEST_PA_LAT"),
    ("DX", "CHEST LATERAL", "DX_CHEST_LAT"),
    ("DX", "CHEST AP PORTABLE", "DX_CHEST_AP"),
    ("DX", "胸片", "DX_CHEST"),
    ("DX", "腹部立卧位", "DX_ABDOMEN"),
    ("DX", "KUB", "DX_ABDOMEN"),
    ("DX", "PELVIS AP", "DX_PELVIS"),
    ("DX", "C-SPINE AP LAT", "DX_SPINE_CERVICAL"),
    ("DX", "胸椎正侧位", "DX_SPINE_THORACIC"),
    ("DX", "KNEE AP LAT", "DX_EXTREMITY"),
    ("DX", "膝关节正侧位", "DX_EXTREMITY"),
    ("DX", "左手正斜位", "DX_EXTREMITY"),
    ("CR", "SKULL AP LAT", "DX_SKULL"),
    # --- mammography
    ("MG", "双乳腺钼靶", "MG_SCREENING"),
    ("MG", "Bilateral Mammography", "MG_SCREENING"),  # Hologic sample
    ("MG", "SCREENING MAMMOGRAM", "MG_SCREENING"),
    ("MG", "乳腺钼靶筛查", "MG_SCREENING"),
    ("MG", "DIAGNOSTIC MAMMOGRAM LEFT", "MG_DIAGNOSTIC"),
    ("MG", "MAMMO UNILATERAL", "MG_DIAGNOSTIC"),
    # --- fluoroscopy and angiography
    ("RF", "BARIUM SWALLOW", "RF_BARIUM_SWALLOW"),
    ("RF", "食管吞钡", "RF_BARIUM_SWALLOW"),
    ("RF", "食管钡餐造影", "RF_BARIUM_SWALLOW"),
    ("RF", "UPPER GI SERIES", "RF_UPPER_GI"),
    ("RF", "钡灌肠", "RF_BARIUM_ENEMA"),
    ("RF", "liuotushoidon raajojen", "RF_GENERIC"),  # Philips Allura sample (Finnish)
    ("XA", "冠状动脉造影", "XA_CORONARY_ANGIO"),
    ("XA", "CORONARY ANGIOGRAPHY", "XA_CORONARY_ANGIO"),
    ("XA", "PCI LAD", "XA_PCI"),
    ("XA", "冠脉支架植入", "XA_PCI"),
    ("XA", "CEREBRAL ANGIOGRAPHY", "XA_GENERIC"),
    # --- MR (utilization only)
    ("MR", "头颅MR平扫", "MR_BRAIN"),
    ("MR", "MRI HEAD", "MR_BRAIN"),
    ("MR", "MR KNEE", "MR_KNEE"),
    ("MR", "膝关节磁共振", "MR_KNEE"),
    ("MR", "MR L-SPINE", "MR_SPINE"),
    ("MR", "Prostate^mpMRI", "MR_PROSTATE"),
    ("MR", "前列腺多参数磁共振", "MR_PROSTATE"),
    # --- nothing to go on
    ("CR", "AEC", UNMAPPED),  # Carestream sample: an exposure-control test
    ("CT", "CT", UNMAPPED),
    ("MR", "CT CHEST", UNMAPPED),  # the text names a region no MR rule covers
    ("CT", "CT HEAD AND NECK", UNMAPPED),  # no head-and-neck plain CT type: better unmapped than wrong
]


def test_golden_table_is_large_enough() -> None:
    assert len(GOLDEN) >= 60
    chinese = [d for _, d, _ in GOLDEN if any("\u4e00" <= ch <= "\u9fff" for ch in d)]
    assert len(chinese) >= 25


@pytest.mark.parametrize(("modality", "description", "expected"), GOLDEN, ids=[g[1] for g in GOLDEN])
def test_golden(modality: str, description: str, expected: str) -> None:
    result = classify(RULES, modality=modality, study_description=description)
    assert result.exam_type == expected, (result, RULES.concepts_of(description))
    if expected == UNMAPPED:
        assert result.rule_id == "" and result.confidence == 0.0
    else:
        assert result.rule_id and 0 < result.confidence <= 1 and result.ruleset_version == RULES.version


def test_every_type_is_reachable_by_some_rule() -> None:
    targets = {r.exam_type for r in RULES.rules}
    assert set(RULES.types) == targets


# --- vendor samples with all their text fields ------------------------------------------------------------


def test_siemens_flash_all_fields() -> None:
    result = classify(
        RULES,
        modality="CT",
        study_description="Thorax^TAP (Adult)",
        requested_procedure_description="CT Thorax abdomen and pelvis with contrast",
        protocol_name="Thorax^TAP (Adult)",
        series_descriptions=["Dose Report"],
        target_regions=["Abdomen"],  # the vendor's coarse target region must not win over the text
    )
    assert (result.exam_type, result.matched_on, result.contrast) == ("CT_CHEST_ABDOMEN_PELVIS", "order", "W")


def test_ge_xr220_sample_maps_from_protocol_when_the_study_description_is_empty() -> None:
    result = classify(
        RULES,
        modality="DX",
        study_description="",
        protocol_name="ABD_1_VIEW",
        series_descriptions=["Abdomen"],
        body_part="ABDOMEN",
    )
    assert (result.exam_type, result.matched_on) == ("DX_ABDOMEN", "protocol")
    assert result.confidence == pytest.approx(0.9 * 0.9)


def test_ge_seno_sample_maps_from_body_part() -> None:
    result = classify(RULES, modality="MG", protocol_name="STEREO", body_part="BREAST")
    assert (result.exam_type, result.matched_on) == ("MG_SCREENING", "series")


# --- tiers, localizers, modifiers ---------------------------------------------------------------------------


def test_order_text_beats_protocol_name() -> None:
    result = classify(RULES, modality="CT", study_description="CT ABDOMEN PELVIS", protocol_name="Thorax")
    assert result.exam_type == "CT_ABDOMEN_PELVIS"


def test_falls_through_to_the_next_tier_when_the_order_names_no_region() -> None:
    result = classify(RULES, modality="CT", study_description="CT EXAM 123", protocol_name="HEAD ROUTINE")
    assert (result.exam_type, result.matched_on) == ("CT_HEAD", "protocol")
    assert result.confidence == pytest.approx(0.95 * 0.9)


def test_target_region_alone_maps_with_lower_confidence() -> None:
    result = classify(RULES, modality="CT", target_regions=["Chest"])
    assert (result.exam_type, result.matched_on) == ("CT_CHEST", "dose_report")
    assert result.confidence == pytest.approx(0.95 * 0.7)


def test_localizer_series_do_not_count_as_body_region() -> None:
    series = ["Topogram 0.6 T20s Abdomen", "Thorax 1.0 B70f", "定位像 腹部"]
    result = classify(RULES, modality="CT", series_descriptions=series)
    assert result.exam_type == "CT_CHEST"
    without_rule = classify(RULES, modality="CT", series_descriptions=["Scan Abdomen", "Thorax 1.0 B70f"])
    assert without_rule.exam_type == "CT_CHEST_ABDOMEN"


def test_modifiers_from_series_refine_the_order() -> None:
    result = classify(RULES, modality="CT", study_description="CT CHEST", series_descriptions=["LD Thorax 1.0"])
    assert result.exam_type == "CT_CHEST_LOWDOSE"


def test_modality_is_read_from_the_text_when_only_an_sr_arrived() -> None:
    result = classify(RULES, modality="SR", study_description="CT HEAD")
    assert result.exam_type == "CT_HEAD" and result.confidence == pytest.approx(0.95 * 0.8)
    assert classify(RULES, modality=None, study_description="HEAD").exam_type == UNMAPPED


# --- contrast and RPIDs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "contrast", "rpid"),
    [
        ("CT HEAD WO", "WO", "RPID22"),
        ("CT HEAD W", "W", "RPID24"),
        ("CT HEAD W/WO", "WWO", "RPID23"),
        ("头颅CT平扫+增强", "WWO", "RPID23"),
        ("CT HEAD WITHOUT CONTRAST", "WO", "RPID22"),
        ("CT HEAD", None, None),  # contrast not stated: no contrast-specific ID is guessed
        ("CTA HEAD", "W", "RPID373"),  # CT angiography is contrast-enhanced by definition
        ("CTPA", "W", "RPID147"),
        ("CT CHEST C+", "W", "RPID18"),
    ],
)
def test_contrast_and_rpid(description: str, contrast: str | None, rpid: str | None) -> None:
    result = classify(RULES, modality="CT", study_description=description)
    assert (result.contrast, result.rpid) == (contrast, rpid)


def test_drl_key_defaults_to_the_type_and_mr_is_never_compared() -> None:
    assert RULES.drl_key("CT_HEAD") == "CT_HEAD"
    assert RULES.drl_key("MR_BRAIN") is None
    assert RULES.drl_key(UNMAPPED) is None
    assert classify(RULES, modality="MR", study_description="MRI HEAD").drl_key is None


# --- normalisation and the hash ----------------------------------------------------------------------------


def test_basic_tokens_split_scripts_and_rewrite_contrast_punctuation() -> None:
    assert basic_tokens("胸部CT平扫") == ["胸部", "CT", "平扫"]
    assert basic_tokens("ct chest w/o") == ["CT", "CHEST", "WO"]
    assert basic_tokens("Abd C+ (w/wo)") == ["ABD", "W", "WWO"]
    assert basic_tokens("C-SPINE") == ["C", "SPINE"]
    assert basic_tokens(None) == []


def test_hash_groups_spelling_variants_and_never_contains_the_text() -> None:
    a = classify(RULES, modality="CT", study_description="Weird Protocol 7 Dr Wong")
    b = classify(RULES, modality="ct", study_description="weird-protocol  7 dr WONG")
    c = classify(RULES, modality="CT", study_description="Weird Protocol 8 Dr Wong")
    assert a.exam_type == UNMAPPED and a.normalised_hash == b.normalised_hash != c.normalised_hash
    assert len(a.normalised_hash) == 16 and "WONG" not in repr(a).upper()


def test_hash_does_not_depend_on_the_rules(tmp_path: Path) -> None:
    edited = DEFAULT_RULES_PATH.read_text(encoding="utf-8").replace('version = "2026.12-1"', 'version = "site-2"')
    edited = edited.replace("[synonyms]\n", '[synonyms]\n"XIONG" = "CHEST"\n', 1)
    path = tmp_path / "site.toml"
    path.write_text(edited, encoding="utf-8")
    site = load_rules(path)
    before = classify(RULES, modality="CT", study_description="CT XIONG")
    after = classify(site, modality="CT", study_description="CT XIONG")
    assert before.exam_type == UNMAPPED and after.exam_type == "CT_CHEST"
    assert before.normalised_hash == after.normalised_hash
    assert site.version == "site-2" and site.digest != RULES.digest


# --- rule-file errors name the rule, the line and the fix --------------------------------------------------


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "rules.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if needle in line)
    return next(i for i in range(index, -1, -1) if lines[i].strip() == "[[rule]]") + 1


def test_unknown_exam_type_in_a_rule(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'exam_type = "CT_SINUS"', 'exam_type = "CT_SINUSES"')
    with pytest.raises(RulesError) as err:
        load_rules(path)
    msg = str(err.value)
    assert f"{path}:{_line_of(path, 'CT_SINUSES')}:" in msg and "'ct.sinus'" in msg
    assert "did you mean 'CT_SINUS'" in msg


def test_unknown_concept_in_a_rule(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'all = ["CHEST", "ABDOMEN", "PELVIS"]', 'all = ["CHEST", "ABDOMEN", "PELVIC"]')
    with pytest.raises(RulesError, match=r"unknown concept 'PELVIC' \(did you mean 'PELVIS'\?\).*\[concepts\]"):
        load_rules(path)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('version = "2026.12-1"', "", "missing `version`"),
        ('"ABD" = "ABDOMEN"', '"ABD" = "ABDOMN"', "synonym 'ABD'.*unknown concept 'ABDOMN'"),
        ('rpid_wo = "RPID22"', 'rpid_wo = "22"', "not a RadLex Playbook ID"),
        ('id = "ct.kub"', 'id = "ct.pelvis"', "duplicate id 'ct.pelvis'"),
        ('any = ["KUB", "STONE"]', "", "has no all/any condition.*fallback = true"),
        (
            'id = "mr.knee"\nexam_type = "MR_KNEE"\nmodality = ["MR"]',
            'id = "mr.knee"\nexam_type = "MR_KNEE"\nmodality = ["CT"]',
            "a MR type",
        ),
        ("confidence = 0.85", "confidence = 1.5", r"out of range.*\(0, 1\]"),
        ('[[rule]]\nid = "ct.rt_planning"', '[[rule]\nid = "ct.rt_planning"', "not valid TOML"),
    ],
)
def test_rule_file_errors(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        load_rules(_broken(tmp_path, old, new))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read the exam-type rules"):
        load_rules(tmp_path / "nope.toml")
