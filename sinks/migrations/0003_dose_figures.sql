-- Dose and operations figures a physicist and a manager sign: v2 dose columns, local days, the day's waits, the
-- patient order of the day, patient cumulative dose, dose by protocol and the likely causes of an exceedance.
-- Views over existing tables only; percentiles interpolate linearly (numpy's default, like streams/utilization.py).

ALTER TABLE instances ADD COLUMN IF NOT EXISTS dose_acquisition_device_type LowCardinality(Nullable(String));
ALTER TABLE instances ADD COLUMN IF NOT EXISTS dose_fluoro_dose_rp_total_mgy Nullable(Float64);
ALTER TABLE instances ADD COLUMN IF NOT EXISTS dose_acquisition_dose_rp_total_mgy Nullable(Float64);
ALTER TABLE irradiation_events ADD COLUMN IF NOT EXISTS exposure_mas Nullable(Float64);
ALTER TABLE exam_dose ADD COLUMN IF NOT EXISTS fluoro_dap_gy_cm2 Nullable(Float64);
ALTER TABLE exam_dose ADD COLUMN IF NOT EXISTS acquisition_dap_gy_cm2 Nullable(Float64);
ALTER TABLE exam_dose ADD COLUMN IF NOT EXISTS fluoro_dose_rp_mgy Nullable(Float64);
ALTER TABLE exam_dose ADD COLUMN IF NOT EXISTS acquisition_dose_rp_mgy Nullable(Float64);

CREATE OR REPLACE VIEW exam_dose_latest AS
SELECT * FROM exam_dose FINAL;

-- The local day of each exam: exam_timing's local_date (the streams compute it in [site] timezone), else the UTC
-- day for an exam the utilization agent has not timed yet.
CREATE OR REPLACE VIEW exam_dose_local AS
SELECT d.*, if(t.local_date IS NULL, toDate(d.start_utc), assumeNotNull(t.local_date)) AS local_date
FROM exam_dose AS d FINAL
LEFT JOIN (SELECT exam_key, local_date FROM exam_timing FINAL) AS t ON t.exam_key = d.exam_key
SETTINGS join_use_nulls = 1;

-- Per local day × device × exam type: exams, exams within DRL, % within DRL, median and P75 of each quantity.
CREATE OR REPLACE VIEW dose_daily AS
SELECT
    d.site_id AS site_id,
    d.local_date AS day,
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
FROM exam_dose_local AS d
WHERE NOT d.not_patient AND d.start_utc IS NOT NULL
GROUP BY site_id, day, station_name, modality, exam_type;

-- The day's waits per device and local day, in minutes: arrival→start and order→start (patient exams that ran).
CREATE OR REPLACE VIEW waits_daily AS
SELECT
    site_id,
    device,
    assumeNotNull(local_date) AS local_date,
    count(arrival_to_start_s) AS arrival_n,
    round(avg(arrival_to_start_s) / 60, 1) AS arrival_mean_min,
    round(quantileExactInclusive(0.5)(arrival_to_start_s) / 60, 1) AS arrival_p50_min,
    round(quantileExactInclusive(0.9)(arrival_to_start_s) / 60, 1) AS arrival_p90_min,
    count(order_to_start_s) AS order_n,
    round(avg(order_to_start_s) / 60, 1) AS order_mean_min,
    round(quantileExactInclusive(0.5)(order_to_start_s) / 60, 1) AS order_p50_min,
    round(quantileExactInclusive(0.9)(order_to_start_s) / 60, 1) AS order_p90_min
FROM exam_timing FINAL
WHERE NOT not_patient AND NOT discontinued AND local_date IS NOT NULL
GROUP BY site_id, device, local_date;

-- Patient order of the day per device: who was taken in which order, when they arrived and how long they waited.
-- `taken` is the order of start on the device; `arrived` the order of arrival among the day's patients with one.
CREATE OR REPLACE VIEW patient_order_daily AS
SELECT
    t.site_id AS site_id,
    t.device AS device,
    assumeNotNull(t.local_date) AS local_date,
    row_number() OVER (PARTITION BY t.site_id, t.device, t.local_date ORDER BY t.start_utc, t.exam_key) AS taken,
    if(t.arrival_to_start_s IS NULL, NULL,
       rank() OVER (PARTITION BY t.site_id, t.device, t.local_date, t.arrival_to_start_s IS NULL
                    ORDER BY t.start_utc - toIntervalMillisecond(toInt64(ifNull(t.arrival_to_start_s, 0) * 1000))))
        AS arrived,
    t.exam_key AS exam_key,
    e.patient_pseudonym AS patient_pseudonym,
    t.exam_type AS exam_type,
    t.start_utc AS start_utc,
    round(t.arrival_to_start_s / 60, 1) AS arrival_wait_min,
    round(t.order_to_start_s / 60, 1) AS order_wait_min
FROM (SELECT * FROM exam_timing FINAL WHERE NOT not_patient AND NOT discontinued AND local_date IS NOT NULL) AS t
LEFT JOIN (SELECT exam_key, patient_pseudonym FROM exams FINAL) AS e ON e.exam_key = t.exam_key;

-- Each patient exam's contribution to a patient's cumulative dose. CT effective-dose proxy = DLP × k, adult k
-- (mSv per mGy·cm) by exam type region: head 0.0021, neck 0.0059, chest/heart 0.014, else trunk 0.015.
CREATE OR REPLACE VIEW patient_exam_dose AS
SELECT
    d.site_id AS site_id,
    e.patient_pseudonym AS patient_pseudonym,
    d.exam_key AS exam_key,
    d.start_utc AS start_utc,
    d.modality AS modality,
    d.exam_type AS exam_type,
    d.dlp_total_mgy_cm AS dlp_mgy_cm,
    d.dlp_total_mgy_cm * multiIf(
        match(d.exam_type, 'CHEST|THORAX|HEART|CORONARY|CARDIAC|CTPA'), 0.014,
        match(d.exam_type, 'NECK'), 0.0059,
        match(d.exam_type, 'HEAD|BRAIN|SINUS|ORBIT|FACE|TEMPORAL'), 0.0021,
        0.015) AS effective_dose_msv,
    d.dap_total_gy_cm2 AS dap_gy_cm2,
    d.dose_rp_mgy AS dose_rp_mgy,
    d.agd_max_breast_mgy AS agd_mgy
FROM exam_dose AS d FINAL
INNER JOIN (SELECT exam_key, patient_pseudonym FROM exams FINAL WHERE patient_pseudonym IS NOT NULL) AS e
    ON e.exam_key = d.exam_key
WHERE NOT d.not_patient AND d.start_utc IS NOT NULL;

-- Patient cumulative dose over a rolling window ending now (parameters: window_days; the [dose] settings give the
-- window and thresholds, `radpulse review cumulative` passes them): one row per patient with any dose in it.
CREATE OR REPLACE VIEW patient_cumulative_dose AS
SELECT
    site_id,
    patient_pseudonym,
    count() AS exams,
    min(start_utc) AS first_exam_utc,
    max(start_utc) AS last_exam_utc,
    groupUniqArray(modality) AS modalities,
    round(sum(dlp_mgy_cm), 1) AS ct_dlp_mgy_cm,
    round(sum(effective_dose_msv), 2) AS ct_effective_dose_msv,
    round(sum(dap_gy_cm2), 3) AS dap_gy_cm2,
    round(sum(dose_rp_mgy), 1) AS dose_rp_mgy,
    round(sum(agd_mgy), 2) AS mg_agd_mgy
FROM patient_exam_dose
WHERE start_utc >= now64(6, 'UTC') - toIntervalDay({window_days:UInt32})
GROUP BY site_id, patient_pseudonym;

-- Dose by scan protocol within an exam type (the protocol as it leaves the edge: the header's protocol name, else
-- the report's first acquisition protocol), so a site sees which protocol drives a type's P75.
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
LEFT JOIN (
    SELECT study_pseudonym AS exam_key, argMin(acquisition_protocol, event_time) AS protocol
    FROM irradiation_events
    WHERE acquisition_protocol IS NOT NULL AND acquisition_type IS DISTINCT FROM 'CONSTANT_ANGLE'
    GROUP BY study_pseudonym
) AS p ON p.exam_key = d.exam_key
WHERE NOT d.not_patient
GROUP BY site_id, modality, exam_type, protocol
SETTINGS join_use_nulls = 1;

-- Per exam type: the median number of irradiation events and series, and the usual (most frequent) protocol.
CREATE OR REPLACE VIEW exam_type_norms AS
SELECT
    d.site_id AS site_id,
    d.exam_type AS exam_type,
    count() AS exams,
    quantileExactInclusive(0.5)(d.event_count) AS median_events,
    quantileExactInclusive(0.5)(e.series_count) AS median_series,
    topKIf(1)(d.protocol, d.protocol IS NOT NULL)[1] AS usual_protocol
FROM exam_dose AS d FINAL
LEFT JOIN (SELECT exam_key, series_count FROM exams FINAL) AS e ON e.exam_key = d.exam_key
WHERE NOT d.not_patient
GROUP BY site_id, exam_type
SETTINGS join_use_nulls = 1;

-- Likely causes of each exceedance, so the physicist confirms rather than digs: a large patient (weight ≥ 90 kg or
-- water-equivalent diameter ≥ 330 mm), more irradiation events or series than the type's median, a protocol other
-- than the type's usual one, and a repeat (another exam of the same type for the patient within 24 h).
CREATE OR REPLACE VIEW dose_alert_causes AS
SELECT
    a.alert_id AS alert_id,
    a.site_id AS site_id,
    a.exam_key AS exam_key,
    arrayStringConcat(arrayFilter(x -> x != '', [
        if(a.patient_weight_kg >= 90 OR a.water_equivalent_diameter_mm >= 330, 'large patient', ''),
        if(d.event_count > n.median_events, concat('more events (', toString(d.event_count), ' vs median ',
           toString(n.median_events), ')'), ''),
        if(e.series_count > n.median_series, concat('more series (', toString(e.series_count), ' vs median ',
           toString(n.median_series), ')'), ''),
        if(a.protocol IS NOT NULL AND n.usual_protocol != '' AND a.protocol != n.usual_protocol,
           'unusual protocol', ''),
        if(r.repeats > 0, 'repeat within 24 h', '')
    ]), '; ') AS likely_causes
FROM dose_alerts AS a FINAL
LEFT JOIN (SELECT exam_key, event_count FROM exam_dose FINAL) AS d ON d.exam_key = a.exam_key
LEFT JOIN (SELECT exam_key, series_count, patient_pseudonym, start_utc FROM exams FINAL) AS e
    ON e.exam_key = a.exam_key
LEFT JOIN exam_type_norms AS n ON n.site_id = a.site_id AND n.exam_type = a.exam_type
LEFT JOIN (
    SELECT x.exam_key AS exam_key, countIf(y.exam_key != x.exam_key
        AND abs(dateDiff('second', x.start_utc, y.start_utc)) <= 86400) AS repeats
    FROM patient_exam_dose AS x
    INNER JOIN patient_exam_dose AS y ON y.patient_pseudonym = x.patient_pseudonym AND y.exam_type = x.exam_type
    GROUP BY x.exam_key
) AS r ON r.exam_key = a.exam_key
SETTINGS join_use_nulls = 1;

-- Open alerts with their likely causes (what `radpulse review list` and the dose dashboard show).
CREATE OR REPLACE VIEW dose_alerts_open_causes AS
SELECT o.*, c.likely_causes AS likely_causes
FROM dose_alerts_open AS o
LEFT JOIN dose_alert_causes AS c ON c.alert_id = o.alert_id;
