-- Dose (exam dose, DRL exceedances, reviews, DRL values) and utilization (device KPIs, exam timing, workflow).
-- Every table is ReplacingMergeTree keyed by the event's identity, so a replayed message collapses.

ALTER TABLE exams ADD COLUMN IF NOT EXISTS exam_type LowCardinality(Nullable(String));
ALTER TABLE exams ADD COLUMN IF NOT EXISTS exam_type_rule LowCardinality(Nullable(String));
ALTER TABLE exams ADD COLUMN IF NOT EXISTS exam_type_confidence Nullable(Float64);
ALTER TABLE exams ADD COLUMN IF NOT EXISTS unmapped_hash Nullable(String);

CREATE OR REPLACE VIEW exams_latest AS
SELECT * FROM exams FINAL;

CREATE TABLE IF NOT EXISTS exam_dose
(
    exam_key String,
    site_id LowCardinality(String),
    version UInt64,
    updated_at DateTime64(6, 'UTC'),
    source LowCardinality(String),
    device_id LowCardinality(Nullable(String)),
    station_name LowCardinality(Nullable(String)),
    manufacturer LowCardinality(Nullable(String)),
    model LowCardinality(Nullable(String)),
    modality LowCardinality(Nullable(String)),
    exam_type LowCardinality(String),
    exam_type_rule LowCardinality(Nullable(String)),
    not_patient Bool,
    start_utc Nullable(DateTime64(6, 'UTC')),
    patient_age_years Nullable(Int32),
    patient_sex LowCardinality(Nullable(String)),
    patient_weight_kg Nullable(Float64),
    patient_height_m Nullable(Float64),
    protocol Nullable(String),
    report_count Int32,
    event_count Int32,
    dlp_total_mgy_cm Nullable(Float64),
    dlp_phantom LowCardinality(Nullable(String)),
    ctdivol_max_mgy Nullable(Float64),
    ctdivol_mean_mgy Nullable(Float64),
    ctdivol_phantom LowCardinality(Nullable(String)),
    ssde_mgy Nullable(Float64),
    water_equivalent_diameter_mm Nullable(Float64),
    dap_total_gy_cm2 Nullable(Float64),
    fluoro_time_s Nullable(Float64),
    dose_rp_mgy Nullable(Float64),
    entrance_dose_mgy Nullable(Float64),
    agd_left_mgy Nullable(Float64),
    agd_right_mgy Nullable(Float64),
    agd_max_breast_mgy Nullable(Float64),
    exposure_index_mean Nullable(Float64),
    deviation_index_mean Nullable(Float64)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site_id, exam_key);

CREATE OR REPLACE VIEW exam_dose_latest AS
SELECT * FROM exam_dose FINAL;

CREATE TABLE IF NOT EXISTS dose_alerts
(
    alert_id String,
    exam_key String,
    site_id LowCardinality(String),
    exam_version UInt64,
    created_at DateTime64(6, 'UTC'),
    quantity LowCardinality(String),
    value Float64,
    unit LowCardinality(String),
    drl_value Float64,
    ratio Float64,
    drl_table LowCardinality(String),
    drl_source String,
    exam_type LowCardinality(String),
    device_id LowCardinality(Nullable(String)),
    station_name LowCardinality(Nullable(String)),
    modality LowCardinality(Nullable(String)),
    phantom LowCardinality(Nullable(String)),
    protocol Nullable(String),
    exam_start_utc Nullable(DateTime64(6, 'UTC')),
    patient_age_years Nullable(Int32),
    patient_sex LowCardinality(Nullable(String)),
    patient_weight_kg Nullable(Float64),
    water_equivalent_diameter_mm Nullable(Float64),
    ssde_mgy Nullable(Float64),
    accession_token Nullable(String),
    not_patient Bool
)
ENGINE = ReplacingMergeTree(exam_version)
ORDER BY (site_id, alert_id);

-- A physicist's verdicts; the latest per alert counts (a verdict can be corrected by recording a new one).
CREATE TABLE IF NOT EXISTS dose_reviews
(
    alert_id String,
    site_id LowCardinality(String),
    reviewed_at DateTime64(6, 'UTC'),
    reviewer LowCardinality(String),
    verdict LowCardinality(String),
    comment String
)
ENGINE = ReplacingMergeTree(reviewed_at)
ORDER BY (site_id, alert_id);

-- Alerts of the latest exam version that nobody reviewed yet (a reopened exam that no longer exceeds drops out).
CREATE OR REPLACE VIEW dose_alerts_open AS
SELECT a.*
FROM dose_alerts AS a FINAL
INNER JOIN (SELECT exam_key, max(version) AS v FROM exam_dose GROUP BY exam_key) AS d
    ON d.exam_key = a.exam_key AND d.v = a.exam_version
WHERE a.alert_id NOT IN (SELECT alert_id FROM dose_reviews)
  AND NOT a.not_patient;

-- The DRL values in force, as loaded by the streams (one row per table, exam type, quantity and phantom).
CREATE TABLE IF NOT EXISTS drl_values
(
    table_id LowCardinality(String),
    exam_type LowCardinality(String),
    quantity LowCardinality(String),
    value Float64,
    unit LowCardinality(String),
    phantom LowCardinality(String),
    per LowCardinality(String),
    population LowCardinality(String),
    percentile LowCardinality(String),
    source String,
    year Int32,
    loaded_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY (table_id, exam_type, quantity, phantom, percentile);

-- Per day × device × exam type: exams, exams within DRL, % within DRL, median and P75 of each quantity.
-- Patient exams only (QA, phantom and test exams are their own category in exam_dose_latest).
CREATE OR REPLACE VIEW dose_daily AS
SELECT
    d.site_id AS site_id,
    toDate(d.start_utc) AS day,
    d.station_name AS station_name,
    d.modality AS modality,
    d.exam_type AS exam_type,
    count() AS exams,
    countIf(d.exam_key NOT IN (SELECT exam_key FROM dose_alerts FINAL)) AS exams_within_drl,
    round(100 * exams_within_drl / exams, 1) AS pct_within_drl,
    quantileExact(0.5)(d.ctdivol_max_mgy) AS ctdivol_p50,
    quantileExact(0.75)(d.ctdivol_max_mgy) AS ctdivol_p75,
    quantileExact(0.5)(d.dlp_total_mgy_cm) AS dlp_p50,
    quantileExact(0.75)(d.dlp_total_mgy_cm) AS dlp_p75,
    quantileExact(0.5)(d.dap_total_gy_cm2) AS dap_p50,
    quantileExact(0.75)(d.dap_total_gy_cm2) AS dap_p75,
    quantileExact(0.5)(d.agd_max_breast_mgy) AS agd_p50,
    quantileExact(0.75)(d.agd_max_breast_mgy) AS agd_p75
FROM exam_dose AS d FINAL
WHERE NOT d.not_patient AND d.start_utc IS NOT NULL
GROUP BY site_id, day, station_name, modality, exam_type;

-- How far each dose statistic can be trusted: per device and exam type, the share with a report, header dose
-- only, no dose, and with patient weight/size.
CREATE OR REPLACE VIEW dose_completeness AS
SELECT
    site_id, station_name, modality, exam_type,
    count() AS exams,
    round(100 * countIf(source = 'REPORT') / exams, 1) AS pct_with_report,
    round(100 * countIf(source = 'HEADER') / exams, 1) AS pct_header_only,
    round(100 * countIf(source = 'NONE') / exams, 1) AS pct_no_dose,
    round(100 * countIf(patient_weight_kg IS NOT NULL) / exams, 1) AS pct_with_weight,
    round(100 * countIf(patient_height_m IS NOT NULL) / exams, 1) AS pct_with_height
FROM exam_dose FINAL
WHERE NOT not_patient
GROUP BY site_id, station_name, modality, exam_type;

-- Peer benchmark per exam type and quantity: each site's median against the distribution of site medians.
-- k-anonymity: only where at least 5 sites with at least 20 exams each contribute; sites appear only under
-- stable pseudonymous labels (a hash of the site id), never by name.
CREATE OR REPLACE VIEW dose_benchmark AS
WITH site_medians AS (
    SELECT site_id, exam_type, quantity, count() AS n, quantileExact(0.5)(value) AS site_median
    FROM (
        SELECT site_id, exam_type, 'DLP' AS quantity, dlp_total_mgy_cm AS value FROM exam_dose FINAL
            WHERE NOT not_patient AND dlp_total_mgy_cm IS NOT NULL
        UNION ALL
        SELECT site_id, exam_type, 'CTDIVOL', ctdivol_max_mgy FROM exam_dose FINAL
            WHERE NOT not_patient AND ctdivol_max_mgy IS NOT NULL
        UNION ALL
        SELECT site_id, exam_type, 'DAP', dap_total_gy_cm2 FROM exam_dose FINAL
            WHERE NOT not_patient AND dap_total_gy_cm2 IS NOT NULL
        UNION ALL
        SELECT site_id, exam_type, 'AGD', agd_max_breast_mgy FROM exam_dose FINAL
            WHERE NOT not_patient AND agd_max_breast_mgy IS NOT NULL
    )
    WHERE exam_type != 'UNMAPPED'
    GROUP BY site_id, exam_type, quantity
    HAVING n >= 20
),
groups AS (
    SELECT exam_type, quantity, count() AS sites,
           quantileExact(0.25)(site_median) AS p25, quantileExact(0.5)(site_median) AS p50,
           quantileExact(0.75)(site_median) AS p75
    FROM site_medians GROUP BY exam_type, quantity HAVING sites >= 5
)
SELECT
    s.exam_type AS exam_type, s.quantity AS quantity, s.site_id AS site_id,
    concat('site-', substring(hex(sipHash64(s.site_id)), 1, 6)) AS peer_label,
    s.n AS exams, s.site_median AS site_median, g.p25 AS p25, g.p50 AS p50, g.p75 AS p75, g.sites AS sites,
    rank() OVER (PARTITION BY s.exam_type, s.quantity ORDER BY s.site_median) AS rank_low_to_high
FROM site_medians AS s
INNER JOIN groups AS g ON g.exam_type = s.exam_type AND g.quantity = s.quantity;

CREATE TABLE IF NOT EXISTS device_kpis
(
    site_id LowCardinality(String),
    device LowCardinality(String),
    grain LowCardinality(String),
    local_date Date,
    hour_local Int8,
    version UInt64,
    updated_at DateTime64(6, 'UTC'),
    modality LowCardinality(Nullable(String)),
    exams Int32,
    qa_exams Int32,
    discontinued_exams Int32,
    busy_minutes Float64,
    busy_outside_hours_minutes Float64,
    operating_minutes Float64,
    idle_minutes Float64,
    changeover_minutes Float64,
    utilization_pct Nullable(Float64),
    changeover_p50_s Nullable(Float64),
    changeover_p90_s Nullable(Float64),
    changeover_coil_change_p50_s Nullable(Float64),
    changeover_coil_change_p90_s Nullable(Float64),
    changeover_same_coil_p50_s Nullable(Float64),
    changeover_same_coil_p90_s Nullable(Float64),
    coil_changes Int32,
    coil_batching_minutes_saved Nullable(Float64)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(local_date)
ORDER BY (site_id, grain, device, local_date, hour_local);

CREATE TABLE IF NOT EXISTS exam_timing
(
    exam_key String,
    site_id LowCardinality(String),
    version UInt64,
    updated_at DateTime64(6, 'UTC'),
    device LowCardinality(String),
    modality LowCardinality(Nullable(String)),
    exam_type LowCardinality(Nullable(String)),
    local_date Nullable(Date),
    hour_local Nullable(Int8),
    start_utc Nullable(DateTime64(6, 'UTC')),
    end_utc Nullable(DateTime64(6, 'UTC')),
    duration_s Nullable(Float64),
    timing_source LowCardinality(Nullable(String)),
    discontinued Bool,
    not_patient Bool,
    coil LowCardinality(Nullable(String)),
    previous_coil LowCardinality(Nullable(String)),
    changeover_s Nullable(Float64),
    coil_changed Nullable(Bool),
    arrival_to_start_s Nullable(Float64),
    arrival_kind LowCardinality(Nullable(String)),
    order_to_start_s Nullable(Float64),
    scheduled_delay_s Nullable(Float64)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site_id, exam_key);

CREATE TABLE IF NOT EXISTS workflow_events
(
    event_id String,
    site_id LowCardinality(String),
    edge_id LowCardinality(String),
    source LowCardinality(String),
    kind LowCardinality(String),
    received_at DateTime64(6, 'UTC'),
    occurred_at Nullable(DateTime64(6, 'UTC')),
    accession_pseudonym Nullable(String),
    accession_token Nullable(String),
    study_pseudonym Nullable(String),
    patient_pseudonym Nullable(String),
    pps_pseudonym Nullable(String),
    message_type LowCardinality(Nullable(String)),
    order_status LowCardinality(Nullable(String)),
    scheduled_start_utc Nullable(DateTime64(6, 'UTC')),
    order_time_utc Nullable(DateTime64(6, 'UTC')),
    pps_start_utc Nullable(DateTime64(6, 'UTC')),
    pps_end_utc Nullable(DateTime64(6, 'UTC')),
    modality LowCardinality(Nullable(String)),
    station_name LowCardinality(Nullable(String)),
    station_ae LowCardinality(Nullable(String)),
    calling_ae LowCardinality(Nullable(String)),
    procedure_description Nullable(String)
)
ENGINE = ReplacingMergeTree(received_at)
ORDER BY (site_id, event_id);
