//! The five Conveyor kinds as kubectl names them on the command line.

use std::fmt;

/// One of the five custom resources of `conveyor.etl/v1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    RouterCluster,
    Pipeline,
    Source,
    Transform,
    Sink,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::RouterCluster, Kind::Pipeline, Kind::Source, Kind::Transform, Kind::Sink];

    /// The kind as the API names it (`EtlPipeline`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::RouterCluster => "EtlRouterCluster",
            Kind::Pipeline => "EtlPipeline",
            Kind::Source => "EtlSource",
            Kind::Transform => "EtlTransform",
            Kind::Sink => "EtlSink",
        }
    }

    /// The CRD's short name (`etlp`).
    pub fn short_name(self) -> &'static str {
        match self {
            Kind::RouterCluster => "etlrc",
            Kind::Pipeline => "etlp",
            Kind::Source => "etlsrc",
            Kind::Transform => "etltf",
            Kind::Sink => "etlsink",
        }
    }

    /// Whether this kind is one of the three service kinds.
    pub fn is_service(self) -> bool {
        matches!(self, Kind::Source | Kind::Transform | Kind::Sink)
    }

    /// The kind named as kubectl accepts it: the short name, the singular or
    /// the plural (any case), the kind itself, each optionally followed by
    /// the group (`etlpipelines.conveyor.etl`).
    pub fn parse(text: &str) -> Option<Kind> {
        let lower = text.to_ascii_lowercase();
        let bare = lower.strip_suffix(".conveyor.etl").unwrap_or(&lower);
        Kind::ALL.into_iter().find(|kind| {
            let singular = kind.name().to_ascii_lowercase();
            bare == kind.short_name() || bare == singular || bare == format!("{singular}s")
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `KIND/NAME`, or `KIND NAME` given as two arguments.
pub fn parse_target(first: &str, second: Option<&str>) -> Result<(Kind, String), String> {
    let (kind, name) = match (first.split_once('/'), second) {
        (Some((kind, name)), None) => (kind, name),
        (None, Some(name)) => (first, name),
        (Some(_), Some(_)) => {
            return Err(format!(
                "give KIND/NAME or KIND NAME, not both: {first} {}",
                second.unwrap_or_default()
            ));
        }
        (None, None) => return Err(format!("{first}: give KIND/NAME, e.g. etlp/user-analytics")),
    };
    if name.is_empty() {
        return Err(format!("{first}: the name is empty"));
    }
    let kind = Kind::parse(kind).ok_or_else(|| {
        let known: Vec<String> =
            Kind::ALL.iter().map(|k| format!("{} ({})", k.short_name(), k.name())).collect();
        format!("{kind} is not a Conveyor kind; one of {}", known.join(", "))
    })?;
    Ok((kind, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_the_crds_declare_is_accepted() {
        for crd in conveyor_etl_operator::crd::all() {
            let names = &crd.spec.names;
            let kind = Kind::parse(&names.kind).unwrap_or_else(|| panic!("{}", names.kind));
            assert_eq!(kind.name(), names.kind);
            assert_eq!(Kind::parse(&names.plural), Some(kind), "{}", names.plural);
            assert_eq!(Kind::parse(names.singular.as_deref().unwrap()), Some(kind));
            assert_eq!(Kind::parse(&format!("{}.conveyor.etl", names.plural)), Some(kind));
            let short = names.short_names.clone().unwrap_or_default();
            assert_eq!(short, vec![kind.short_name().to_owned()], "{}", names.kind);
            assert_eq!(Kind::parse(&short[0].to_uppercase()), Some(kind));
        }
        assert_eq!(Kind::parse("pods"), None);
        assert_eq!(Kind::parse("etl"), None);
    }

    #[test]
    fn targets_take_kubectls_two_forms() {
        assert_eq!(parse_target("etlp/user-analytics", None), Ok((Kind::Pipeline, "user-analytics".into())));
        assert_eq!(parse_target("etltransforms", Some("enrich")), Ok((Kind::Transform, "enrich".into())));
        assert!(parse_target("etlp", None).unwrap_err().contains("KIND/NAME"));
        assert!(parse_target("deploy/x", None).unwrap_err().contains("not a Conveyor kind"));
        assert!(parse_target("etlp/", None).is_err());
    }
}
