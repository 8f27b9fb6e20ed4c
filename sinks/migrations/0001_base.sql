-- 0001: the base tables. Never edit this file once applied anywhere; add 0002_….sql instead.
-- Column order matches sinks/rows.py. Types follow the Avro schema (int → Int32, long → Int64, double → Float64)
-- so that anything that decodes also inserts; a column is Nullable exactly where the event field is optional.
-- Every table is a ReplacingMergeTree keyed on the event's identity, so a redelivered batch collapses on merge
-- (read with FINAL, or through the *_latest views, for exact counts).

-- One row per received DICOM instance. A resend has the same event_id but a later received_at: the sorting key
-- holds the identity and received_at is the version, so the latest copy wins. The partition uses event_time (the
-- clinical time, computed in rows.py), never received_at: both copies must land in the same partition to collapse.
CREATE TABLE IF NOT EXISTS instances
(
    event_id String,
    site_id LowCardinality(String),
    edge_id LowCardinality(String),
    received_at DateTime64(6, 'UTC'),
    calling_ae LowCardinality(String),
    sop_class_uid LowCardinality(String),
    transfer_syntax_uid LowCardinality(String),
    instance_pseudonym String,
    study_pseudonym String,
    series_pseudonym Nullable(String),
    patient_pseudonym Nullable(String),
    accession_pseudonym Nullable(String),
    accession_token Nullable(String),
    device_id LowCardinality(Nullable(String)),
    modality LowCardinality(Nullable(String)),
    manufacturer LowCardinality(Nullable(String)),
    model LowCardinality(Nullable(String)),
    station_name LowCardinality(Nullable(String)),
    device_serial LowCardinality(Nullable(String)),
    software_versions LowCardinality(Nullable(String)),
    image_type Array(LowCardinality(String)),
    series_number Nullable(Int32),
    instance_number Nullable(Int32),
    patient_age_years Nullable(Int32),
    patient_sex LowCardinality(Nullable(String)),
    patient_weight_kg Nullable(Float64),
    patient_height_m Nullable(Float64),
    not_patient Bool,
    study_description Nullable(String),
    series_description Nullable(String),
    protocol_name Nullable(String),
    requested_procedure_description Nullable(String),
    performed_procedure_step_description Nullable(String),
    body_part LowCardinality(Nullable(String)),
    view_position LowCardinality(Nullable(String)),
    laterality LowCardinality(Nullable(String)),
    study_datetime_utc Nullable(DateTime64(6, 'UTC')),
    series_datetime_utc Nullable(DateTime64(6, 'UTC')),
    acquisition_datetime_utc Nullable(DateTime64(6, 'UTC')),
    content_datetime_utc Nullable(DateTime64(6, 'UTC')),
    pps_start_utc Nullable(DateTime64(6, 'UTC')),
    pps_end_utc Nullable(DateTime64(6, 'UTC')),
    mr_receive_coil LowCardinality(Nullable(String)),
    mr_transmit_coil LowCardinality(Nullable(String)),
    mr_field_strength_t Nullable(Float64),
    number_of_frames Nullable(Int32),
    event_time DateTime64(6, 'UTC'),
    exposure_kvp Nullable(Float64),
    exposure_tube_current_ma Nullable(Float64),
    exposure_exposure_time_ms Nullable(Float64),
    exposure_exposure_mas Nullable(Float64),
    exposure_ctdivol_mgy Nullable(Float64),
    exposure_ctdi_phantom LowCardinality(Nullable(String)),
    exposure_dap_gy_cm2 Nullable(Float64),
    exposure_exposure_index Nullable(Float64),
    exposure_target_exposure_index Nullable(Float64),
    exposure_deviation_index Nullable(Float64),
    exposure_entrance_dose_mgy Nullable(Float64),
    exposure_organ_dose_mgy Nullable(Float64),
    exposure_organ_exposed LowCardinality(Nullable(String)),
    exposure_fluoro_time_s Nullable(Float64),
    exposure_water_equivalent_diameter_mm Nullable(Float64),
    exposure_irradiation_event_pseudonym Nullable(String),
    dose_kind LowCardinality(Nullable(String)),
    dose_template_id LowCardinality(Nullable(String)),
    dose_procedure_reported LowCardinality(Nullable(String)),
    dose_scope LowCardinality(Nullable(String)),
    dose_completion_flag LowCardinality(Nullable(String)),
    dose_device_role LowCardinality(Nullable(String)),
    dose_start_utc Nullable(DateTime64(6, 'UTC')),
    dose_end_utc Nullable(DateTime64(6, 'UTC')),
    dose_total_events Nullable(Int32),
    dose_ct_dlp_total_mgy_cm Nullable(Float64),
    dose_dap_total_gy_cm2 Nullable(Float64),
    dose_fluoro_dap_total_gy_cm2 Nullable(Float64),
    dose_acquisition_dap_total_gy_cm2 Nullable(Float64),
    dose_dose_rp_total_mgy Nullable(Float64),
    dose_fluoro_time_total_s Nullable(Float64),
    dose_acquisition_time_total_s Nullable(Float64),
    dose_agd_left_mgy Nullable(Float64),
    dose_agd_right_mgy Nullable(Float64),
    dose_agd_both_mgy Nullable(Float64),
    dose_event_count Int32,
    -- the sorting key is the identity (for dedup); this lets arrival-time queries skip granules
    INDEX idx_received_at received_at TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (site_id, study_pseudonym, event_id);

-- One row per irradiation event of a dose report. The same event can arrive in two copies of a report (modality
-- and PACS, different SR instances), so the key is the event itself and event_time prefers the event's own start.
CREATE TABLE IF NOT EXISTS irradiation_events
(
    site_id LowCardinality(String),
    study_pseudonym String,
    event_pseudonym String,
    received_at DateTime64(6, 'UTC'),
    event_time DateTime64(6, 'UTC'),
    event_id String,
    edge_id LowCardinality(String),
    instance_pseudonym String,
    patient_pseudonym Nullable(String),
    accession_pseudonym Nullable(String),
    device_id LowCardinality(Nullable(String)),
    modality LowCardinality(Nullable(String)),
    manufacturer LowCardinality(Nullable(String)),
    model LowCardinality(Nullable(String)),
    station_name LowCardinality(Nullable(String)),
    not_patient Bool,
    dose_kind LowCardinality(String),
    datetime_started_utc Nullable(DateTime64(6, 'UTC')),
    acquisition_protocol Nullable(String),
    target_region_code LowCardinality(Nullable(String)),
    target_region LowCardinality(Nullable(String)),
    acquisition_type LowCardinality(Nullable(String)),
    event_type LowCardinality(Nullable(String)),
    acquisition_plane LowCardinality(Nullable(String)),
    laterality LowCardinality(Nullable(String)),
    ctdivol_mgy Nullable(Float64),
    dlp_mgy_cm Nullable(Float64),
    ctdi_phantom LowCardinality(Nullable(String)),
    scanning_length_mm Nullable(Float64),
    exposure_time_s Nullable(Float64),
    pitch Nullable(Float64),
    kvp Nullable(Float64),
    tube_current_ma Nullable(Float64),
    ssde_mgy Nullable(Float64),
    water_equivalent_diameter_mm Nullable(Float64),
    dap_gy_cm2 Nullable(Float64),
    dose_rp_mgy Nullable(Float64),
    entrance_exposure_mgy Nullable(Float64),
    irradiation_duration_s Nullable(Float64),
    agd_mgy Nullable(Float64),
    exposure_index Nullable(Float64),
    target_exposure_index Nullable(Float64),
    deviation_index Nullable(Float64)
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (site_id, study_pseudonym, event_pseudonym);

-- One row per published exam version; the highest version wins. No PARTITION BY on purpose: ReplacingMergeTree
-- only collapses rows inside one partition, and every time an exam carries (start_utc, study_datetime_utc,
-- first_received_at) can move between versions (a late instance with an earlier acquisition time; a study time
-- missing from the first instance), so a time partition could keep two "latest" rows of one exam. Exams are few
-- (≈10^5–10^6 per site and year, one row each after merges), so one partition stays cheap; see exams_latest.
CREATE TABLE IF NOT EXISTS exams
(
    exam_key String,
    site_id LowCardinality(String),
    version UInt64,
    status LowCardinality(String),
    updated_at DateTime64(6, 'UTC'),
    edge_id LowCardinality(Nullable(String)),
    device_id LowCardinality(Nullable(String)),
    calling_ae LowCardinality(Nullable(String)),
    modality LowCardinality(Nullable(String)),
    manufacturer LowCardinality(Nullable(String)),
    model LowCardinality(Nullable(String)),
    station_name LowCardinality(Nullable(String)),
    device_serial LowCardinality(Nullable(String)),
    study_description Nullable(String),
    requested_procedure_description Nullable(String),
    protocol_name Nullable(String),
    body_part LowCardinality(Nullable(String)),
    series_descriptions Array(String),
    patient_pseudonym Nullable(String),
    accession_pseudonym Nullable(String),
    accession_token Nullable(String),
    patient_age_years Nullable(Int32),
    patient_sex LowCardinality(Nullable(String)),
    patient_weight_kg Nullable(Float64),
    patient_height_m Nullable(Float64),
    not_patient Bool,
    start_utc Nullable(DateTime64(6, 'UTC')),
    end_utc Nullable(DateTime64(6, 'UTC')),
    duration_s Nullable(Float64),
    study_datetime_utc Nullable(DateTime64(6, 'UTC')),
    pps_start_utc Nullable(DateTime64(6, 'UTC')),
    pps_end_utc Nullable(DateTime64(6, 'UTC')),
    series_count Int32,
    instance_count Int32,
    first_received_at Nullable(DateTime64(6, 'UTC')),
    last_received_at Nullable(DateTime64(6, 'UTC')),
    mr_receive_coils Array(LowCardinality(String)),
    mr_field_strength_t Nullable(Float64),
    has_dose_report Bool
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site_id, exam_key);

-- Edge heartbeats for the pipeline-health dashboard, kept 90 days. Replacing (not plain MergeTree) so a
-- redelivered heartbeat, same (site, edge, at), collapses like every other table.
CREATE TABLE IF NOT EXISTS edge_health
(
    site_id LowCardinality(String),
    edge_id LowCardinality(String),
    at DateTime64(6, 'UTC'),
    started_at DateTime64(6, 'UTC'),
    received Int64,
    produced Int64,
    spooled Int64,
    drained Int64,
    ignored Int64,
    rejected Int64,
    out_of_resources Int64,
    spool_pending Int64,
    spool_bytes Int64,
    kafka_ok Bool
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (site_id, edge_id, at)
TTL toDateTime(at) + INTERVAL 90 DAY
SETTINGS ttl_only_drop_parts = 1;

-- The latest version of each exam. A view stores the column list: a migration that adds exam columns must
-- recreate it (CREATE OR REPLACE VIEW).
CREATE VIEW IF NOT EXISTS exams_latest AS
SELECT * FROM exams FINAL;
