-- Each exam's protocol as its dose report names it (the first acquisition protocol of the report, scouts left out):
-- one derivation for the dose_by_protocol view and the dose dashboard's protocol panel, which filters by time and
-- device before it aggregates and so cannot read the aggregated view.
CREATE OR REPLACE VIEW exam_report_protocol AS
SELECT study_pseudonym AS exam_key, argMin(acquisition_protocol, event_time) AS protocol
FROM irradiation_events
WHERE acquisition_protocol IS NOT NULL AND acquisition_type IS DISTINCT FROM 'CONSTANT_ANGLE'
GROUP BY study_pseudonym;

CREATE OR REPLACE VIEW dose_by_protocol AS
SELECT
    d.site_id AS site_id,
    d.modality AS modality,
    d.exam_type AS exam_type,
    coalesce(d.protocol, p.protocol, '(none)') AS protocol,
    count() AS exams,
    quantileExactInclusive(0.5)(d.ctdivol_max_mgy) AS ctdivol_p50,
    quantileExactInclusive(0.75)(d.ctdivol_max_mgy) AS ctdivol_p75,
    quantileExactInclusive(0.5)(d.dlp_total_mgy_cm) AS dlp_p50,
    quantileExactInclusive(0.75)(d.dlp_total_mgy_cm) AS dlp_p75,
    quantileExactInclusive(0.5)(d.dap_total_gy_cm2) AS dap_p50,
    quantileExactInclusive(0.75)(d.dap_total_gy_cm2) AS dap_p75,
    quantileExactInclusive(0.5)(d.agd_max_breast_mgy) AS agd_p50,
    quantileExactInclusive(0.75)(d.agd_max_breast_mgy) AS agd_p75
FROM exam_dose AS d FINAL
LEFT JOIN exam_report_protocol AS p ON p.exam_key = d.exam_key
WHERE NOT d.not_patient
GROUP BY site_id, modality, exam_type, protocol
SETTINGS join_use_nulls = 1;
