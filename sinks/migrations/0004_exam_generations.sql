-- An exam continued by a later generation (a late instance after the streams evicted or lost its state; see
-- schemas/exam_version.py and sinks/generations.py) keeps its *base* here: the exams row as it stood before the new
-- generation, with version set to that generation's first. Few rows (only continued exams). Same columns as
-- exams: a migration that adds an exam column adds it here too.
CREATE TABLE IF NOT EXISTS exam_carry
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
    has_dose_report Bool,
    exam_type LowCardinality(Nullable(String)),
    exam_type_rule LowCardinality(Nullable(String)),
    exam_type_confidence Nullable(Float64),
    unmapped_hash Nullable(String)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site_id, exam_key);
