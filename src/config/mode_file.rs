//! The mode file `denwa mode` writes and the engine re-reads: JSON next to
//! the status file, replaced atomically (temp file + rename) so a reader
//! never sees half of it.

use std::path::Path;

use crate::policy::Modes;

/// The modes in `path`; a missing file means every line is normal.
pub fn read(path: &Path) -> Result<Modes, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Modes::from_json(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Modes::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Write `modes` to `path` atomically.
pub fn write(path: &Path, modes: &Modes) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let temp = path.with_extension(format!("json.tmp{}", std::process::id()));
    std::fs::write(&temp, modes.to_json()).map_err(|e| format!("{}: {e}", temp.display()))?;
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("{}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("denwa-modes-{}", std::process::id()));
        let path = dir.join("modes.json");
        let _ = std::fs::remove_file(&path);
        assert_eq!(read(&path).unwrap(), Modes::default());
        let now: jiff::Timestamp = "2026-11-23T01:00:00Z".parse().unwrap();
        let mut modes = Modes::default();
        modes.set("public", "busy", Some("2026-11-23T03:00:00Z".parse().unwrap()), now);
        write(&path, &modes).unwrap();
        assert_eq!(read(&path).unwrap(), modes);
        assert!(
            std::fs::read_dir(&dir).unwrap().count() == 1,
            "no temp file left behind"
        );
        std::fs::write(&path, "{not json").unwrap();
        assert!(read(&path).unwrap_err().contains("modes.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
