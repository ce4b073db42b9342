//! The install's writes onto the host: this binary, the credentials, the conflist. Each file is
//! written beside its place, synced, and renamed over it, so a runtime that starts a pod
//! meanwhile reads the old file or the new one, never half of one; and it is written only when
//! its content changes, so that the DaemonSet's every restart is a no-op.

use std::path::Path;

use super::InstallError;

/// Copies the binary at `self_exe` into `bin_dir` as `nethouse-cni`; `Ok(false)` when it was
/// already there.
pub fn install_binary(self_exe: &Path, bin_dir: &Path) -> Result<bool, InstallError> {
    let binary = std::fs::read(self_exe).map_err(|source| InstallError::ReadBinary {
        path: self_exe.to_path_buf(),
        source,
    })?;
    replace(&bin_dir.join("nethouse-cni"), &binary, 0o755)
}

/// Writes `content` to `path` atomically; `Ok(false)` when it was already there.
pub fn replace(path: &Path, content: &[u8], mode: u32) -> Result<bool, InstallError> {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    let dir = path.parent().ok_or_else(|| InstallError::NoParentDir {
        path: path.to_path_buf(),
    })?;
    std::fs::create_dir_all(dir).map_err(|source| InstallError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        InstallError::WriteFile {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(true)
}

/// Copies every file of `from` (dot entries skipped: a mounted Secret's `..data` links) into
/// `to`, mode 0600; returns (files, changed).
pub fn copy_credentials(from: &Path, to: &Path) -> Result<(usize, usize), InstallError> {
    let dir_err = |source| InstallError::CredentialsDir {
        path: from.to_path_buf(),
        source,
    };
    let (mut files, mut changed) = (0, 0);
    for entry in std::fs::read_dir(from).map_err(dir_err)? {
        let entry = entry.map_err(dir_err)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks, as a Secret volume's files are.
        if !path.is_file() {
            continue;
        }
        let content =
            std::fs::read(&path).map_err(|source| InstallError::ReadCredential { path, source })?;
        files += 1;
        if replace(&to.join(&name), &content, 0o600)? {
            changed += 1;
        }
    }
    if files == 0 {
        return Err(InstallError::NoCredentials {
            path: from.to_path_buf(),
        });
    }
    Ok((files, changed))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn replaces_only_on_change_and_names_the_file_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/f");
        assert!(replace(&path, b"one", 0o644).unwrap());
        assert!(!replace(&path, b"one", 0o644).unwrap());
        assert!(replace(&path, b"two", 0o644).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        // A directory where the file's directory should be.
        let blocked = dir.path().join("sub/f/g");
        let e = replace(&blocked, b"x", 0o644).unwrap_err();
        assert!(matches!(e, InstallError::CreateDir { .. }), "{e}");
        assert!(e.to_string().contains("sub/f"), "{e}");
    }

    #[test]
    fn copies_credentials_like_a_secret_volume() {
        let dir = tempfile::tempdir().unwrap();
        // A Secret volume: files are links into a hidden, timestamped directory.
        let secret = dir.path().join("secret");
        let data = secret.join("..2024_01_01");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("node.token"), "t0ken").unwrap();
        std::fs::write(data.join("ca.crt"), "pem").unwrap();
        std::os::unix::fs::symlink("..2024_01_01", secret.join("..data")).unwrap();
        for f in ["node.token", "ca.crt"] {
            std::os::unix::fs::symlink(format!("..data/{f}"), secret.join(f)).unwrap();
        }
        let host = dir.path().join("host");
        assert_eq!(copy_credentials(&secret, &host).unwrap(), (2, 2));
        assert_eq!(copy_credentials(&secret, &host).unwrap(), (2, 0));
        assert_eq!(std::fs::read(host.join("node.token")).unwrap(), b"t0ken");
        let mode = std::fs::metadata(host.join("node.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(&host).unwrap().collect();
        assert_eq!(names.len(), 2, "only the two files, no dot entries");
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let e = copy_credentials(&empty, &host).unwrap_err();
        assert!(e.to_string().contains("no files"), "{e}");
        let e = copy_credentials(&dir.path().join("absent"), &host).unwrap_err();
        assert!(e.to_string().starts_with("--copy-credentials "), "{e}");
    }
}
