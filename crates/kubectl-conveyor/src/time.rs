//! Ages as kubectl prints them.

use k8s_openapi::jiff::Timestamp;

/// `now - then` the way `kubectl get` shows an age: `42s`, `3m12s`, `25m`,
/// `4h10m`, `13h`, `6d`. A time ahead of `now` (clocks apart) is `0s`.
pub fn age(then: Timestamp, now: Timestamp) -> String {
    let seconds = (now.as_second() - then.as_second()).max(0);
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86400);
    match () {
        _ if seconds < 60 => format!("{seconds}s"),
        _ if minutes < 10 => format!("{minutes}m{}s", seconds % 60),
        _ if hours < 1 => format!("{minutes}m"),
        _ if hours < 10 => format!("{hours}h{}m", minutes % 60),
        _ if days < 1 => format!("{hours}h"),
        _ => format!("{days}d"),
    }
}

/// The age of `then`, or `<unknown>` without one.
pub fn age_of(then: Option<Timestamp>, now: Timestamp) -> String {
    then.map_or_else(|| "<unknown>".to_owned(), |then| age(then, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectls() {
        let now: Timestamp = "2030-01-02T00:00:00Z".parse().unwrap();
        let ago = |s: i64| age(Timestamp::from_second(now.as_second() - s).unwrap(), now);
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(59), "59s");
        assert_eq!(ago(192), "3m12s");
        assert_eq!(ago(25 * 60 + 5), "25m");
        assert_eq!(ago(4 * 3600 + 10 * 60), "4h10m");
        assert_eq!(ago(13 * 3600 + 1), "13h");
        assert_eq!(ago(6 * 86400 + 7), "6d");
        assert_eq!(ago(-30), "0s");
        assert_eq!(age_of(None, now), "<unknown>");
    }
}
