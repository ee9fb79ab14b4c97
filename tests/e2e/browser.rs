//! The page in a real browser: `tests/browser/page.mjs` drives headless
//! Chromium (Debian's `chromium`, through `playwright-core`; scripts/test.sh
//! installs both) against an app of this suite. The screenshot it takes is
//! left in `target/browser/page.png` for a developer to look at.

use std::process::Command;

use crate::helpers::{TestApp, app_root};

#[test]
fn a_photo_picked_on_the_page_reaches_completed_with_its_thumbnail_and_a_text_file_shows_the_415() {
    let app = TestApp::spawn();
    // A real photograph; scripts/test.sh fetches one and names it here.
    let photo = std::env::var("DARKROOM_TEST_PHOTO")
        .expect("DARKROOM_TEST_PHOTO names a JPEG photograph (scripts/test.sh sets it)");
    let shots = app_root().join("target/browser");
    let script = app_root().join("tests/browser/page.mjs");
    let output = Command::new("node")
        .arg(&script)
        .arg(app.url(""))
        .arg(&photo)
        .arg(&shots)
        .current_dir(app_root().join("tests/browser"))
        .output()
        .expect("node runs (scripts/test.sh installs playwright-core and chromium)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the page test failed: {stdout}\n{stderr}\napp log:\n{}",
        app.logs()
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(seen["thumbnailWidth"], 200, "{seen}");
    assert!(
        seen["states"].as_array().is_some_and(|s| s.len() >= 2),
        "progress before completion: {seen}"
    );
    assert!(shots.join("page.png").exists());
}
