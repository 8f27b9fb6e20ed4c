"""A seeded synthetic hospital: plans realistic imaging days, builds their DICOM objects and workflow messages,
sends them over real associations and keeps the exact ground truth."""
