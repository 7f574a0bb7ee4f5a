//! What pipelines and services know of each other: EtlSource, EtlTransform
//! and EtlSink as one [`ServiceResource`] (the service kind reconciles them,
//! a pipeline reads them as its stages), and which pipelines name a service
//! (a service change wakes them; a service they name is not let go).

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::crd::{
    ClusterRef, EtlPipeline, EtlPipelineSpec, EtlSink, EtlSource, EtlTransform, GrpcSpec, ServiceStatus,
};
use crate::router::ServiceKind;

/// What every kind needs of a service resource, whichever of the three it is.
pub trait ServiceResource: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static {
    const KIND: ServiceKind;
    fn grpc(&self) -> &GrpcSpec;
    fn cluster_ref(&self) -> Option<&ClusterRef>;
    fn service_status(&self) -> Option<&ServiceStatus>;
    /// Whether a pipeline's spec names a service of this kind called `name`.
    fn referenced_by(spec: &EtlPipelineSpec, name: &str) -> bool;
}

macro_rules! service_resource {
    ($type:ty, $kind:expr, $names:expr) => {
        impl ServiceResource for $type {
            const KIND: ServiceKind = $kind;
            fn grpc(&self) -> &GrpcSpec {
                &self.spec.grpc
            }
            fn cluster_ref(&self) -> Option<&ClusterRef> {
                self.spec.cluster_ref.as_ref()
            }
            fn service_status(&self) -> Option<&ServiceStatus> {
                self.status.as_ref()
            }
            fn referenced_by(spec: &EtlPipelineSpec, name: &str) -> bool {
                $names(spec, name)
            }
        }
    };
}

service_resource!(EtlSource, ServiceKind::Source, names_source);
service_resource!(EtlTransform, ServiceKind::Transform, names_step);
service_resource!(EtlSink, ServiceKind::Sink, names_sink);

fn names_source(spec: &EtlPipelineSpec, name: &str) -> bool {
    spec.source == name
}

fn names_step(spec: &EtlPipelineSpec, name: &str) -> bool {
    spec.steps.iter().any(|step| step == name)
}

fn names_sink(spec: &EtlPipelineSpec, name: &str) -> bool {
    spec.sink == name
}

/// The pipelines in `service`'s namespace whose spec names it.
pub fn pipelines_naming<K: ServiceResource>(
    pipelines: &Store<EtlPipeline>,
    service: &K,
) -> Vec<Arc<EtlPipeline>> {
    let (namespace, name) = (service.namespace(), service.name_any());
    pipelines
        .state()
        .into_iter()
        .filter(|pipeline| pipeline.namespace() == namespace && K::referenced_by(&pipeline.spec, &name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{EtlSinkSpec, EtlSourceSpec, EtlTransformSpec};
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    #[test]
    fn a_service_is_named_by_the_pipelines_of_its_namespace_in_its_own_role() {
        let (store, mut writer) = reflector::store::<EtlPipeline>();
        let spec = EtlPipelineSpec {
            source: "a".into(),
            steps: vec!["b".into()],
            sink: "c".into(),
            ..Default::default()
        };
        for (namespace, name) in [("ns", "p"), ("other", "q")] {
            let mut pipeline = EtlPipeline::new(name, spec.clone());
            pipeline.metadata.namespace = Some(namespace.into());
            writer.apply_watcher_event(&Event::Apply(pipeline));
        }
        let names = |pipelines: Vec<Arc<EtlPipeline>>| -> Vec<String> {
            pipelines.iter().map(|pipeline| pipeline.name_any()).collect()
        };
        let mut source = EtlSource::new("a", EtlSourceSpec::default());
        source.metadata.namespace = Some("ns".into());
        assert_eq!(names(pipelines_naming(&store, &source)), ["p"]);
        let mut step = EtlTransform::new("b", EtlTransformSpec::default());
        step.metadata.namespace = Some("ns".into());
        assert_eq!(names(pipelines_naming(&store, &step)), ["p"]);
        let mut sink_named_like_the_source = EtlSink::new("a", EtlSinkSpec::default());
        sink_named_like_the_source.metadata.namespace = Some("ns".into());
        assert!(pipelines_naming(&store, &sink_named_like_the_source).is_empty());
    }
}
