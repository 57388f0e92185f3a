//! The kinds of lineage edge, which nodes each may join, the parameters each takes, and how
//! each maps onto W3C PROV-DM. Every rule about edges lives here, once.

use std::fmt;

use serde_json::{Map, Value};

use super::NodeKind;
use crate::{CoreError, Result};

/// A typed lineage edge. An edge points from the derived node to what it came from: a model
/// `trained_on` a dataset, a run that `used` a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Relation {
    FineTuned,
    Distilled,
    Merged,
    Quantized,
    Pruned,
    TrainedOn,
    EvaluatedOn,
    TrainedWith,
    ProducedBy,
    Used,
    Executed,
    DerivedFrom,
}

/// How a relation appears in PROV-DM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvRelation {
    /// `wasDerivedFrom(generatedEntity, usedEntity)`
    WasDerivedFrom,
    /// `wasGeneratedBy(entity, activity)`
    WasGeneratedBy,
    /// `used(activity, entity)`
    Used,
    /// `wasInfluencedBy(influencee, influencer)`: an influence that is not a derivation
    /// (a model evaluated on a dataset was not made from it).
    WasInfluencedBy,
}

impl ProvRelation {
    /// The PROV-DM relation's name, as PROV-JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvRelation::WasDerivedFrom => "wasDerivedFrom",
            ProvRelation::WasGeneratedBy => "wasGeneratedBy",
            ProvRelation::Used => "used",
            ProvRelation::WasInfluencedBy => "wasInfluencedBy",
        }
    }
}

/// What one parameter of a relation accepts.
#[derive(Debug, Clone, Copy)]
enum ParamType {
    /// Free text up to 4 KiB.
    Text,
    /// A finite number, strictly positive.
    Positive,
    /// A finite number in [0, 1].
    Fraction,
    /// A finite number.
    Number,
    /// A quantization method: one of QUANT_METHODS or a GGUF type name.
    QuantMethod,
}

struct ParamSpec {
    key: &'static str,
    kind: ParamType,
    required: bool,
}

const MAX_PARAM_TEXT: usize = 4096;

/// Quantization methods accepted besides GGUF type names.
pub const QUANT_METHODS: &[&str] = &["int8", "int4", "fp16", "bf16", "fp8", "dynamic"];

/// GGUF tensor types as llama.cpp names them (`llama-quantize --help`), compared
/// case-insensitively and stored upper-case.
pub const GGUF_TYPES: &[&str] = &[
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q2_K_S", "Q3_K_S",
    "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ1_S", "IQ1_M",
    "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_NL",
    "IQ4_XS", "TQ1_0", "TQ2_0", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8",
];

impl Relation {
    pub const ALL: [Relation; 12] = [
        Relation::FineTuned,
        Relation::Distilled,
        Relation::Merged,
        Relation::Quantized,
        Relation::Pruned,
        Relation::TrainedOn,
        Relation::EvaluatedOn,
        Relation::TrainedWith,
        Relation::ProducedBy,
        Relation::Used,
        Relation::Executed,
        Relation::DerivedFrom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Relation::FineTuned => "fine_tuned",
            Relation::Distilled => "distilled",
            Relation::Merged => "merged",
            Relation::Quantized => "quantized",
            Relation::Pruned => "pruned",
            Relation::TrainedOn => "trained_on",
            Relation::EvaluatedOn => "evaluated_on",
            Relation::TrainedWith => "trained_with",
            Relation::ProducedBy => "produced_by",
            Relation::Used => "used",
            Relation::Executed => "executed",
            Relation::DerivedFrom => "derived_from",
        }
    }

    /// Parse a relation name; `fine-tuned` and `FINE_TUNED` are accepted too.
    pub fn parse(text: &str) -> Result<Self> {
        let wanted = text.trim().to_ascii_lowercase().replace('-', "_");
        Relation::ALL
            .into_iter()
            .find(|r| r.as_str() == wanted)
            .ok_or_else(|| CoreError::InvalidInput {
                message: format!(
                    "unknown lineage relation {:?}: expected one of {}",
                    text.chars().take(40).collect::<String>(),
                    Relation::ALL.map(Relation::as_str).join(", ")
                ),
            })
    }

    /// The position of this relation in `ALL`, for bit masks.
    pub fn index(self) -> usize {
        Relation::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    pub fn from_index(index: u8) -> Option<Relation> {
        Relation::ALL.get(usize::from(index)).copied()
    }

    /// (kind of the derived node, kind of the node it came from).
    pub fn endpoints(self) -> (NodeKind, NodeKind) {
        use NodeKind::*;
        match self {
            Relation::FineTuned
            | Relation::Distilled
            | Relation::Merged
            | Relation::Quantized
            | Relation::Pruned => (Model, Model),
            Relation::TrainedOn | Relation::EvaluatedOn => (Model, Dataset),
            Relation::TrainedWith => (Model, Recipe),
            Relation::ProducedBy => (Model, Run),
            Relation::Used => (Run, Dataset),
            Relation::Executed => (Run, Recipe),
            Relation::DerivedFrom => (Dataset, Dataset),
        }
    }

    pub fn prov(self) -> ProvRelation {
        match self {
            Relation::ProducedBy => ProvRelation::WasGeneratedBy,
            Relation::Used | Relation::Executed => ProvRelation::Used,
            Relation::EvaluatedOn | Relation::TrainedWith => ProvRelation::WasInfluencedBy,
            _ => ProvRelation::WasDerivedFrom,
        }
    }

    fn params(self) -> &'static [ParamSpec] {
        const fn spec(key: &'static str, kind: ParamType, required: bool) -> ParamSpec {
            ParamSpec {
                key,
                kind,
                required,
            }
        }
        const RECIPE: &[ParamSpec] = &[spec("recipe", ParamType::Text, false)];
        const TEMPERATURE: &[ParamSpec] = &[spec("temperature", ParamType::Positive, false)];
        const WEIGHT: &[ParamSpec] = &[spec("weight", ParamType::Number, false)];
        const METHOD: &[ParamSpec] = &[spec("method", ParamType::QuantMethod, true)];
        const SPARSITY: &[ParamSpec] = &[spec("sparsity", ParamType::Fraction, false)];
        const SPLIT: &[ParamSpec] = &[spec("split", ParamType::Text, false)];
        const TRANSFORMATION: &[ParamSpec] = &[spec("transformation", ParamType::Text, false)];
        match self {
            Relation::FineTuned => RECIPE,
            Relation::Distilled => TEMPERATURE,
            Relation::Merged => WEIGHT,
            Relation::Quantized => METHOD,
            Relation::Pruned => SPARSITY,
            Relation::TrainedOn | Relation::EvaluatedOn | Relation::Used => SPLIT,
            Relation::DerivedFrom => TRANSFORMATION,
            Relation::TrainedWith | Relation::ProducedBy | Relation::Executed => &[],
        }
    }

    /// Check an edge's endpoints.
    pub fn check_endpoints(self, from: NodeKind, to: NodeKind) -> Result<()> {
        let (want_from, want_to) = self.endpoints();
        if (from, to) == (want_from, want_to) {
            return Ok(());
        }
        Err(CoreError::InvalidInput {
            message: format!(
                "a {self} edge goes from a {want_from} to a {want_to}, not from a {from} to a {to}"
            ),
        })
    }

    /// Check parameters and return them in canonical form (numbers as JSON numbers, GGUF
    /// names upper-case). Numbers may arrive as text (`--param temperature=2`).
    pub fn check_params(self, params: &Map<String, Value>) -> Result<Map<String, Value>> {
        let specs = self.params();
        let mut checked = Map::new();
        for (key, value) in params {
            let Some(spec) = specs.iter().find(|s| s.key == key) else {
                let known = if specs.is_empty() {
                    "it takes no parameters".to_string()
                } else {
                    format!(
                        "it takes {}",
                        specs.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
                    )
                };
                return Err(CoreError::InvalidInput {
                    message: format!(
                        "a {self} edge has no parameter {:?}: {known}",
                        key.chars().take(40).collect::<String>()
                    ),
                });
            };
            checked.insert(key.clone(), self.check_value(spec, value)?);
        }
        if let Some(missing) = specs
            .iter()
            .find(|s| s.required && !checked.contains_key(s.key))
        {
            return Err(CoreError::InvalidInput {
                message: format!(
                    "a {self} edge needs --param {}=... ({})",
                    missing.key,
                    self.describe(missing.kind)
                ),
            });
        }
        Ok(checked)
    }

    fn describe(self, kind: ParamType) -> String {
        match kind {
            ParamType::Text => "text".into(),
            ParamType::Positive => "a number above 0".into(),
            ParamType::Fraction => "a number from 0 to 1".into(),
            ParamType::Number => "a number".into(),
            ParamType::QuantMethod => format!(
                "{} or a GGUF type such as Q4_K_M or Q8_0",
                QUANT_METHODS.join(", ")
            ),
        }
    }

    fn check_value(self, spec: &ParamSpec, value: &Value) -> Result<Value> {
        let bad = || CoreError::InvalidInput {
            message: format!(
                "{self} parameter {} = {}: expected {}",
                spec.key,
                shorten(&value.to_string()),
                self.describe(spec.kind)
            ),
        };
        let number = || -> Result<f64> {
            let n = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            n.filter(|n| n.is_finite()).ok_or_else(bad)
        };
        let as_json = |n: f64| serde_json::Number::from_f64(n).map(Value::Number);
        match spec.kind {
            ParamType::Text => match value {
                Value::String(s) if !s.is_empty() && s.len() <= MAX_PARAM_TEXT => {
                    Ok(Value::String(s.clone()))
                }
                _ => Err(bad()),
            },
            ParamType::Number => as_json(number()?).ok_or_else(bad),
            ParamType::Positive => {
                let n = number()?;
                if n > 0.0 {
                    as_json(n).ok_or_else(bad)
                } else {
                    Err(bad())
                }
            }
            ParamType::Fraction => {
                let n = number()?;
                if (0.0..=1.0).contains(&n) {
                    as_json(n).ok_or_else(bad)
                } else {
                    Err(bad())
                }
            }
            ParamType::QuantMethod => {
                let Value::String(text) = value else {
                    return Err(bad());
                };
                let lower = text.trim().to_ascii_lowercase();
                if let Some(m) = QUANT_METHODS.iter().find(|m| **m == lower) {
                    return Ok(Value::String((*m).to_string()));
                }
                let upper = text.trim().to_ascii_uppercase();
                GGUF_TYPES
                    .iter()
                    .find(|t| **t == upper)
                    .map(|t| Value::String((*t).to_string()))
                    .ok_or_else(bad)
            }
        }
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text.to_string()
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn names_round_trip() {
        for r in Relation::ALL {
            assert_eq!(Relation::parse(r.as_str()).ok(), Some(r));
            assert_eq!(Relation::from_index(r.index() as u8), Some(r));
        }
        assert_eq!(
            Relation::parse("Fine-Tuned").ok(),
            Some(Relation::FineTuned)
        );
        assert!(Relation::parse("parent_of").is_err());
    }

    #[test]
    fn quantized_needs_a_known_method() {
        let q = Relation::Quantized;
        assert!(q.check_params(&Map::new()).is_err());
        let ok = q
            .check_params(&params(json!({"method": "q4_k_m"})))
            .expect("gguf");
        assert_eq!(ok["method"], json!("Q4_K_M"));
        assert!(q.check_params(&params(json!({"method": "int8"}))).is_ok());
        assert!(q.check_params(&params(json!({"method": "int3"}))).is_err());
        assert!(q.check_params(&params(json!({"method": 8}))).is_err());
    }

    #[test]
    fn numbers_are_typed_and_bounded() {
        let d = Relation::Distilled
            .check_params(&params(json!({"temperature": "2.5"})))
            .expect("text number");
        assert_eq!(d["temperature"], json!(2.5));
        assert!(Relation::Distilled
            .check_params(&params(json!({"temperature": 0})))
            .is_err());
        assert!(Relation::Pruned
            .check_params(&params(json!({"sparsity": 1.5})))
            .is_err());
        assert!(Relation::Merged
            .check_params(&params(json!({"weight": "NaN"})))
            .is_err());
        assert!(Relation::Merged
            .check_params(&params(json!({"weigth": 0.5})))
            .is_err());
        assert!(Relation::ProducedBy
            .check_params(&params(json!({"x": 1})))
            .is_err());
    }

    #[test]
    fn endpoints_are_enforced() {
        assert!(Relation::TrainedOn
            .check_endpoints(NodeKind::Model, NodeKind::Dataset)
            .is_ok());
        assert!(Relation::TrainedOn
            .check_endpoints(NodeKind::Dataset, NodeKind::Model)
            .is_err());
    }
}
