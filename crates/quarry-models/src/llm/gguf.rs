//! Reader for GGUF files (the llama.cpp model format, versions 2 and 3): metadata key/values,
//! tensor descriptions, and the tensor data, all checked against the file's length before use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The GGML tensor types Quarry can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl DType {
    fn from_id(id: u32) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            6 => DType::Q5_0,
            7 => DType::Q5_1,
            8 => DType::Q8_0,
            12 => DType::Q4K,
            13 => DType::Q5K,
            14 => DType::Q6K,
            30 => DType::BF16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        match self {
            DType::F32 => (1, 4),
            DType::F16 | DType::BF16 => (1, 2),
            DType::Q4_0 => (32, 18),
            DType::Q4_1 => (32, 20),
            DType::Q5_0 => (32, 22),
            DType::Q5_1 => (32, 24),
            DType::Q8_0 => (32, 34),
            DType::Q4K => (256, 144),
            DType::Q5K => (256, 176),
            DType::Q6K => (256, 210),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the contiguous (innermost) dimension.
    pub dims: Vec<usize>,
    pub dtype: DType,
    /// Byte range in the file.
    pub start: usize,
    pub end: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A whole GGUF file in memory.
pub struct Gguf {
    pub path: PathBuf,
    pub metadata: HashMap<String, Value>,
    pub tensors: HashMap<String, TensorInfo>,
    data: Vec<u8>,
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Gguf> {
        let data = std::fs::read(path).map_err(|e| Error::Unreadable {
            path: path.to_path_buf(),
            source: e,
        })?;
        Gguf::parse(path, data)
    }

    pub fn parse(path: &Path, data: Vec<u8>) -> Result<Gguf> {
        let bad = |message: String| Error::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if data.len() < 4 || &data[..4] != b"GGUF" {
            return Err(bad("not a GGUF file (no GGUF magic)".into()));
        }
        let mut r = Reader { data: &data, pos: 4 };
        let version = r.u32().map_err(&bad)?;
        if !(2..=3).contains(&version) {
            return Err(bad(format!("unsupported GGUF version {version}")));
        }
        let n_tensors = r.u64().map_err(&bad)?;
        let n_kv = r.u64().map_err(&bad)?;
        // Each entry takes at least 8 bytes: counts beyond the file's size are corrupt.
        if n_tensors > data.len() as u64 / 8 || n_kv > data.len() as u64 / 8 {
            return Err(bad("corrupt header (impossible tensor or metadata count)".into()));
        }
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = r.string().map_err(&bad)?;
            let ty = r.u32().map_err(&bad)?;
            let value = r.value(ty, 0).map_err(|m| bad(format!("metadata `{key}`: {m}")))?;
            metadata.insert(key, value);
        }
        let mut infos = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string().map_err(&bad)?;
            let n_dims = r.u32().map_err(&bad)?;
            if n_dims == 0 || n_dims > 4 {
                return Err(bad(format!("tensor `{name}`: {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64().map_err(&bad)? as usize);
            }
            let ty = r.u32().map_err(&bad)?;
            let offset = r.u64().map_err(&bad)? as usize;
            let dtype =
                DType::from_id(ty).ok_or_else(|| bad(format!("tensor `{name}`: unsupported tensor type {ty}")))?;
            infos.push((name, dims, dtype, offset));
        }
        let alignment = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(32) as usize;
        if alignment == 0 {
            return Err(bad("general.alignment is 0".into()));
        }
        let base = r.pos.div_ceil(alignment) * alignment;
        let mut tensors = HashMap::new();
        for (name, dims, dtype, offset) in infos {
            let elements = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let (per_block, block_bytes) = dtype.block();
            let size = elements
                .filter(|n| n % per_block == 0)
                .and_then(|n| (n / per_block).checked_mul(block_bytes))
                .ok_or_else(|| bad(format!("tensor `{name}`: shape {dims:?} does not fit {dtype:?} blocks")))?;
            let start = base
                .checked_add(offset)
                .ok_or_else(|| bad(format!("tensor `{name}`: bad offset")))?;
            let end = start.checked_add(size).filter(|&e| e <= data.len()).ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` ends past the end of the file (truncated download?)"
                ))
            })?;
            tensors.insert(
                name.clone(),
                TensorInfo {
                    name,
                    dims,
                    dtype,
                    start,
                    end,
                },
            );
        }
        Ok(Gguf {
            path: path.to_path_buf(),
            metadata,
            tensors,
            data,
        })
    }

    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.data[t.start..t.end]
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn missing(&self, key: &str) -> Error {
        Error::Invalid {
            path: self.path.clone(),
            message: format!("metadata `{key}` is missing or has the wrong type"),
        }
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        self.get(key).and_then(Value::as_u64).ok_or_else(|| self.missing(key))
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        self.get(key).and_then(Value::as_str).ok_or_else(|| self.missing(key))
    }

    pub fn strings(&self, key: &str) -> Result<Vec<&str>> {
        let arr = self
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| self.missing(key))?;
        arr.iter()
            .map(|v| v.as_str().ok_or_else(|| self.missing(key)))
            .collect()
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| "file ends inside the header (truncated or corrupt)".to_string())?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let n = self.u64()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }
    fn value(&mut self, ty: u32, depth: usize) -> std::result::Result<Value, String> {
        Ok(match ty {
            0 => Value::U64(u64::from(self.array::<1>()?[0])),
            1 => Value::I64(i64::from(self.array::<1>()?[0] as i8)),
            2 => Value::U64(u64::from(u16::from_le_bytes(self.array()?))),
            3 => Value::I64(i64::from(i16::from_le_bytes(self.array()?))),
            4 => Value::U64(u64::from(self.u32()?)),
            5 => Value::I64(i64::from(i32::from_le_bytes(self.array()?))),
            6 => Value::F64(f64::from(f32::from_le_bytes(self.array()?))),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                if depth > 2 {
                    return Err("arrays nested too deeply".into());
                }
                let inner = self.u32()?;
                let n = self.u64()? as usize;
                if n > self.data.len() - self.pos {
                    return Err("array longer than the file".into());
                }
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(self.value(inner, depth + 1)?);
                }
                Value::Array(out)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(format!("unknown value type {other}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n_tensors: u64, kv: &[(&str, &str)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend((kv.len() as u64).to_le_bytes());
        for (k, v) in kv {
            b.extend((k.len() as u64).to_le_bytes());
            b.extend(k.as_bytes());
            b.extend(8u32.to_le_bytes());
            b.extend((v.len() as u64).to_le_bytes());
            b.extend(v.as_bytes());
        }
        b
    }

    #[test]
    fn reads_metadata_and_rejects_damage() {
        let p = Path::new("m.gguf");
        let g = Gguf::parse(p, header(0, &[("general.architecture", "llama")])).expect("valid");
        assert_eq!(g.str("general.architecture").ok(), Some("llama"));
        assert!(g.u64("llama.block_count").is_err());

        let mut truncated = header(0, &[("general.architecture", "llama")]);
        truncated.truncate(truncated.len() - 3);
        let e = Gguf::parse(p, truncated).err().expect("truncated").to_string();
        assert!(e.contains("m.gguf") && e.contains("truncated"), "{e}");

        let e = Gguf::parse(p, b"PK\x03\x04 not a model".to_vec())
            .err()
            .expect("bad magic")
            .to_string();
        assert!(e.contains("not a GGUF file"), "{e}");

        // A tensor whose data lies beyond the end of the file.
        let mut b = header(1, &[]);
        b.extend(1u64.to_le_bytes());
        b.push(b'w');
        b.extend(2u32.to_le_bytes());
        b.extend(32u64.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        let e = Gguf::parse(p, b).err().expect("short data").to_string();
        assert!(e.contains("past the end"), "{e}");
    }
}
