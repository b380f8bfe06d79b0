//! Data sets: CSV loading, label encoding, standardization, splits, gate files.
