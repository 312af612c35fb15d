//! The test runner's own pieces that can be checked without a suite: how
//! another runner's TAP output (node's, for the browser tests) becomes one
//! result per test in `cargo test`'s output.

mod common;

use common::harness::tap_results;

#[test]
fn tap_results_name_each_test_in_its_blocks() {
    let tap = "TAP version 13\n# Subtest: login page\n    # Subtest: checks \\# the fields\n    ok 1 - checks \\# the fields\n      ---\n      duration_ms: 0.4\n      ...\n    # Subtest: works \\\\ plain\n    not ok 2 - works \\\\ plain\n    1..2\nnot ok 1 - login page\n# Subtest: room\n    # Subtest: two chat\n    ok 1 - two chat\n    1..1\nok 2 - room\n1..2\n# tests 3\n";
    assert_eq!(
        tap_results(tap),
        [
            ("login page › checks # the fields".to_string(), true),
            ("login page › works \\ plain".to_string(), false),
            ("room › two chat".to_string(), true),
        ]
    );
}
