//! `ListPipelines` read as summaries: each `PipelineConfig` of the answer is
//! decoded on its own and kept as its [`PipelineSummary`], so a list of ten
//! thousand never exists decoded all at once (it did, and was half of the
//! operator's heap at 10,000 pipelines; see docs/heap-profile.md).

use prost::bytes::Buf;
use prost::encoding::{DecodeContext, WireType, decode_key, message, skip_field};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use crate::router::mapping::PipelineSummary;
use crate::router::proto::router::{ListPipelinesRequest, PipelineConfig};

/// Each listed pipeline's id and summary, in the answer's order.
pub type Summaries = Vec<(String, PipelineSummary)>;

/// `ListPipelinesResponse.pipelines`'s field number.
const PIPELINES_FIELD: u32 = 1;

/// Decodes a `ListPipelinesResponse` one pipeline at a time (with the
/// functions prost's generated code uses), skipping fields it does not know.
pub fn summaries(mut buf: impl Buf) -> Result<Summaries, prost::DecodeError> {
    let mut listed = Vec::new();
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag == PIPELINES_FIELD && wire_type == WireType::LengthDelimited {
            let mut config = PipelineConfig::default();
            message::merge(wire_type, &mut config, &mut buf, DecodeContext::default())?;
            let summary = PipelineSummary::of(&config);
            listed.push((config.id, summary));
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default())?;
        }
    }
    Ok(listed)
}

/// The `ListPipelines` codec: the request as prost encodes it, the answer as [`summaries`].
#[derive(Default)]
pub struct SummaryCodec;

impl Codec for SummaryCodec {
    type Encode = ListPipelinesRequest;
    type Decode = Summaries;
    type Encoder = ProstEncoder<ListPipelinesRequest>;
    type Decoder = SummaryDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        SummaryDecoder
    }
}

pub struct SummaryDecoder;

impl Decoder for SummaryDecoder {
    type Item = Summaries;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Summaries>, Status> {
        // As tonic's prost decoder: a message that does not parse is INTERNAL.
        summaries(buf).map(Some).map_err(|error| Status::internal(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::EtlPipelineSpec;
    use crate::router::mapping::pipeline_config;
    use crate::router::proto::router::ListPipelinesResponse;
    use prost::Message;

    #[test]
    fn each_listed_pipeline_is_summarised_as_a_whole_decode_would() {
        let spec =
            EtlPipelineSpec { source: "s".into(), sink: "k".into(), enabled: true, ..Default::default() };
        let ours = pipeline_config("ns", "ours", 4, &spec);
        let mut foreign = pipeline_config("ns", "foreign", 1, &spec);
        foreign.metadata.clear();
        foreign.enabled = false;
        let response = ListPipelinesResponse { pipelines: vec![ours.clone(), foreign.clone()] };
        let listed = summaries(response.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            listed,
            [
                ("ns/ours".to_owned(), PipelineSummary::of(&ours)),
                ("ns/foreign".to_owned(), PipelineSummary::of(&foreign)),
            ]
        );
        assert_eq!(listed[0].1.generation, Some(4));
        assert!(listed[0].1.same_shape_as(&ours) && !listed[1].1.enabled);
        assert!(summaries(&[][..]).unwrap().is_empty());
    }

    #[test]
    fn unknown_fields_are_skipped_and_a_cut_answer_is_an_error() {
        let spec = EtlPipelineSpec { source: "s".into(), sink: "k".into(), ..Default::default() };
        let config = pipeline_config("ns", "p", 1, &spec);
        let mut bytes = ListPipelinesResponse { pipelines: vec![config.clone()] }.encode_to_vec();
        // A field 2 (a varint, 150) that a newer router might add.
        bytes.extend_from_slice(&[0x10, 0x96, 0x01]);
        assert_eq!(summaries(bytes.as_slice()).unwrap(), [("ns/p".to_owned(), PipelineSummary::of(&config))]);
        let whole = ListPipelinesResponse { pipelines: vec![config] }.encode_to_vec();
        assert!(summaries(&whole[..whole.len() - 3]).is_err());
    }
}
