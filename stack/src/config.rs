//! Configuration from `SLUICE_*` environment variables (see docs/configuration.md).
