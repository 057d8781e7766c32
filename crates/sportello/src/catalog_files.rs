//! Reads a catalog folder: `dictionary.toml`, `institutions/*.toml`, `services/*.toml`.

use std::path::Path;

use domain::catalog::{Catalog, CatalogError, Source, SourceKind};

/// A catalog that could not be loaded: every problem, each with file, line and column.
#[derive(Debug)]
pub struct CatalogProblems(pub Vec<CatalogError>);

impl std::fmt::Display for CatalogProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "the catalog has {} problem(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CatalogProblems {}

fn problem(path: &Path, message: String) -> CatalogError {
    CatalogError { file: path.display().to_string(), line: 0, column: 0, message }
}

/// The `.toml` files directly in `dir`, sorted by name.
fn toml_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, CatalogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| problem(dir, format!("cannot read the folder: {e}")))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and checks the catalog in `dir`.
pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogProblems> {
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    let mut read = |path: &Path, kind: SourceKind, problems: &mut Vec<CatalogError>| match std::fs::read_to_string(path)
    {
        Ok(text) => {
            let shown = path.strip_prefix(dir).unwrap_or(path);
            sources.push(Source { path: format!("{}/{}", dir.display(), shown.display()), kind, text });
        }
        Err(e) => problems.push(problem(path, format!("cannot read the file: {e}"))),
    };
    read(&dir.join("dictionary.toml"), SourceKind::Dictionary, &mut problems);
    for (folder, kind) in [("institutions", SourceKind::Institution), ("services", SourceKind::Services)] {
        match toml_files(&dir.join(folder)) {
            Ok(files) => files.iter().for_each(|f| read(f, kind, &mut problems)),
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(CatalogProblems(problems));
    }
    Catalog::from_sources(&sources).map_err(CatalogProblems)
}
