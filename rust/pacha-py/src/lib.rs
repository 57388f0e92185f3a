//! `pacha._core`: the thin binding over `pacha-core`.
//!
//! This crate only converts types, maps errors and releases the GIL; every rule lives in the
//! core. Nothing here is public API: `python/pacha/__init__.py` decides what users see.

mod buffer;
mod detach;
mod errors;
mod hashing;
mod lineage;
mod panics;
mod registry;
mod store;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    panics::install_hook();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PARALLEL_THRESHOLD", pacha_core::hash::PARALLEL_THRESHOLD)?;
    m.add("SMALL_OBJECT_MAX", pacha_core::store::SMALL_OBJECT_MAX)?;
    m.add_function(wrap_pyfunction!(hashing::hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(hashing::hash_bytes, m)?)?;
    m.add_class::<hashing::Hasher>()?;
    m.add_class::<detach::Progress>()?;
    m.add_class::<store::ObjectStore>()?;
    m.add_class::<store::PutOutcome>()?;
    m.add_class::<store::ObjectInfo>()?;
    m.add_class::<store::Problem>()?;
    m.add_class::<store::VerifyReport>()?;
    m.add_class::<registry::Registry>()?;
    m.add_class::<registry::VersionInfo>()?;
    m.add_class::<registry::TransitionInfo>()?;
    m.add_class::<registry::RunInfo>()?;
    m.add_class::<registry::NameInfo>()?;
    m.add_class::<registry::RegistryProblem>()?;
    m.add_class::<registry::RegistryVerifyReport>()?;
    m.add_class::<registry::StatsInfo>()?;
    m.add_class::<lineage::LineageResult>()?;
    m.add(
        "VERSION_ROW_FIELDS",
        vec![
            "kind",
            "name",
            "version",
            "stage",
            "digest",
            "layout",
            "size",
            "file_count",
            "description",
            "aliases",
            "tags",
            "created_at",
            "created_by",
            "card",
            "run_id",
        ],
    )?;
    // The relations and their PROV mapping, from the one place that defines them.
    use pacha_core::lineage::Relation;
    m.add(
        "LINEAGE_RELATIONS",
        Relation::ALL.map(Relation::as_str).to_vec(),
    )?;
    m.add(
        "LINEAGE_PROV",
        Relation::ALL
            .map(|r| (r.as_str(), r.prov().as_str()))
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    )?;
    m.add_function(wrap_pyfunction!(registry::location_problem, m)?)?;
    m.add_function(wrap_pyfunction!(registry::parse_version, m)?)?;
    m.add_function(wrap_pyfunction!(registry::compare_versions, m)?)?;
    m.add_function(wrap_pyfunction!(registry::validate_name, m)?)?;
    m.add_function(wrap_pyfunction!(registry::validate_metric, m)?)?;
    m.add_function(wrap_pyfunction!(registry::download_cache_usage, m)?)?;
    m.add_function(wrap_pyfunction!(registry::prune_download_cache, m)?)?;
    Ok(())
}
