//! Corrupt or full state: truncated, empty or non-UTF-8 records and
//! leases, stray temporary files, a directory swapped for a symlink, a full
//! or read-only run directory. Nothing panics or harms the other
//! containers; each case fails closed with one clear line, or gc repairs it.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;

use support::*;
use wirehook_tests::*;

/// Not a panic (exit 101) or a signal, and at most one line on stderr.
fn no_panic(out: &Output, what: &str) {
    assert_ne!(
        out.status.code(),
        Some(101),
        "{what}: panicked\n{}",
        out.report()
    );
    assert!(
        out.status.signal().is_none(),
        "{what}: died\n{}",
        out.report()
    );
    let err = out.stderr_str();
    assert!(
        err.lines().filter(|l| !l.trim().is_empty()).count() <= 1,
        "{what}: one line at most\n{err}"
    );
}

/// Run the commands an operator and a runtime would, against the state as
/// it is: none may panic; `bystander` must stay as recorded.
fn survive(host: &TestHost, bystander: &Container<'_>, what: &str) {
    for args in [
        &["ps"][..],
        &["check", bystander.id()],
        &["gc"],
        &["network", "ls"],
    ] {
        let out = host.wirehook(args, None);
        no_panic(&out, &format!("{what}: wirehook {args:?}"));
    }
    let c = host.container("probe");
    let out = setup(host, &c, &[("io.wirehook.network", "bridge")]);
    no_panic(&out, &format!("{what}: a new setup"));
    if out.status.success() {
        unwire(host, c.id());
    }
    let out = host.wirehook_hook(
        "poststop",
        &oci_state("ghost", "stopped", None, &host.root().join("nb"), &[]),
    );
    no_panic(&out, &format!("{what}: poststop"));
    host.wirehook(&["check", bystander.id()], None)
        .expect_success(&format!("{what}: the bystander is unharmed"));
}

fn files_named(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_named(&p, ext));
        } else if p.to_string_lossy().ends_with(ext) {
            out.push(p);
        }
    }
    out
}

#[test]
fn every_truncation_of_a_record_and_a_lease_is_survived() {
    let host = TestHost::new("trunc");
    let by = host.container("by");
    wire(
        &host,
        &by,
        &[
            ("io.wirehook.network", "bridge"),
            ("io.wirehook.ports", "8989:80"),
        ],
    );
    let victim = host.container("victim");
    wire(&host, &victim, &[("io.wirehook.network", "bridge")]);
    let record = run_dir(&host)
        .join("containers")
        .join(format!("{}.json", victim.id()));
    let whole = std::fs::read(&record).unwrap();
    let lease = files_named(&run_dir(&host).join("leases"), "")
        .into_iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|s| s.trim() == victim.id()))
        .expect("the victim's lease");
    let whole_lease = std::fs::read(&lease).unwrap();
    // Every prefix of the record (step 7 keeps it quick; the ends exactly).
    let mut cuts: Vec<usize> = (0..whole.len()).step_by(7).collect();
    cuts.extend([1, whole.len() - 1]);
    for cut in cuts {
        std::fs::write(&record, &whole[..cut]).unwrap();
        let out = host.wirehook(&["ps"], None);
        no_panic(&out, &format!("record cut at {cut}: ps"));
        let out = host.wirehook(&["check", by.id()], None);
        no_panic(&out, &format!("record cut at {cut}: check"));
    }
    // Invalid UTF-8 and zero length, then the full round of commands.
    std::fs::write(&record, b"{\"id\": \"\xff\xfe\"}").unwrap();
    survive(&host, &by, "record with invalid UTF-8");
    std::fs::write(&record, b"").unwrap();
    survive(&host, &by, "empty record");
    for cut in 0..whole_lease.len() {
        std::fs::write(&lease, &whole_lease[..cut]).unwrap();
        survive(&host, &by, &format!("lease cut at {cut}"));
    }
    std::fs::write(&lease, b"\xff\xfe\n").unwrap();
    survive(&host, &by, "lease with invalid UTF-8");
    // A stray temporary file beside the records.
    std::fs::write(record.with_file_name(".x.json.123.tmp"), b"{").unwrap();
    survive(&host, &by, "a stray temporary file");
    // Put the victim's record back whole: its teardown works.
    std::fs::write(&record, &whole).unwrap();
    std::fs::write(&lease, &whole_lease).unwrap();
    unwire(&host, victim.id());
    unwire(&host, by.id());
    host.wirehook(&["gc"], None).expect_success("gc");
    let _ = std::fs::remove_file(record.with_file_name(".x.json.123.tmp"));
    assert_clean(&host);
}

#[test]
fn a_run_directory_swapped_for_a_symlink_is_refused() {
    let host = TestHost::new("symlink");
    let by = host.container("by");
    wire(&host, &by, &[("io.wirehook.network", "bridge")]);
    // Someone replaces the names directory with a link to /etc.
    let names = run_dir(&host).join("names");
    let aside = run_dir(&host).join("names.real");
    std::fs::rename(&names, &aside).unwrap();
    let target = host.root().join("elsewhere");
    std::fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&target, &names).unwrap();
    let c = host.container("c");
    let out = setup(&host, &c, &[("io.wirehook.network", "bridge")]);
    no_panic(&out, "names is a symlink");
    assert!(
        !out.status.success(),
        "a start through a symlinked state directory is refused"
    );
    assert!(
        std::fs::read_dir(&target).unwrap().next().is_none(),
        "nothing written through the link"
    );
    std::fs::remove_file(&names).unwrap();
    std::fs::rename(&aside, &names).unwrap();
    host.wirehook(&["check", by.id()], None)
        .expect_success("the bystander");
    unwire(&host, by.id());
    assert_clean(&host);
}

#[test]
fn a_full_or_read_only_run_directory_fails_closed() {
    let host = TestHost::new("full");
    let by = host.container("by");
    wire(&host, &by, &[("io.wirehook.network", "bridge")]);
    // A tiny tmpfs over the records directory, filled up.
    let recs = run_dir(&host).join("containers");
    host.exec(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=64k",
        "tmpfs",
        recs.to_str().unwrap(),
    ])
    .expect_success("mount a tiny tmpfs");
    let filler = recs.join("filler");
    let _ = std::fs::write(&filler, vec![b'x'; 128 * 1024]);
    let c = host.container("c");
    let out = setup(&host, &c, &[("io.wirehook.network", "bridge")]);
    no_panic(&out, "full");
    assert!(
        !out.status.success(),
        "a start that cannot write its record fails"
    );
    assert!(
        links_with_prefix(&host, "whv").len() == 1,
        "nothing of it left"
    );
    // Read-only.
    let _ = std::fs::remove_file(&filler);
    host.exec(&["mount", "-o", "remount,ro", recs.to_str().unwrap()])
        .expect_success("remount read-only");
    let out = setup(&host, &c, &[("io.wirehook.network", "bridge")]);
    no_panic(&out, "read-only");
    assert!(!out.status.success());
    assert!(
        out.stderr_str().to_lowercase().contains("read-only"),
        "{}",
        out.stderr_str()
    );
    assert!(
        links_with_prefix(&host, "whv").len() == 1,
        "nothing of it left"
    );
    host.exec(&["umount", recs.to_str().unwrap()])
        .expect_success("umount");
    // The bystander's record was under the tmpfs all along: still there.
    host.wirehook(&["check", by.id()], None)
        .expect_success("the bystander");
    unwire(&host, by.id());
    host.wirehook(&["gc"], None).expect_success("gc");
    assert_clean(&host);
}
