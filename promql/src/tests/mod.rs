//! End-to-end tests of the engine: scripts of series and queries with the expected results.
//! Unless a case says otherwise, the expected values were checked against Prometheus 2.42.

mod range;
mod script;

#[test]
fn selectors() {
    script::run(include_str!("cases/selectors.test"));
}

#[test]
fn rates() {
    script::run(include_str!("cases/rates.test"));
}

#[test]
fn over_time() {
    script::run(include_str!("cases/over_time.test"));
}

#[test]
fn aggregations() {
    script::run(include_str!("cases/aggregations.test"));
}

#[test]
fn binary_operators() {
    script::run(include_str!("cases/binary.test"));
}

#[test]
fn functions() {
    script::run(include_str!("cases/functions.test"));
}

#[test]
fn histograms() {
    script::run(include_str!("cases/histograms.test"));
}

#[test]
fn subqueries() {
    script::run(include_str!("cases/subqueries.test"));
}
