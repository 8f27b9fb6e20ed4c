"""A seeded synthetic hospital: plans realistic imaging days, builds their DICOM objects and workflow messages,
sends them over real associations and keeps the exact ground truth.

Modules import one way (no module imports one to its right):
``codes`` → ``hospital`` (devices, exam types) → ``exams`` (plan records, truth) → ``plan`` (``plan_days``) and
``dicom`` (images) → ``rdsr`` (dose SRs) / ``workflow`` (HL7, MPPS) → ``sender`` (C-STORE, MLLP, files) → ``cli``.
"""
