//! pgvector's `vector` type as a bound parameter, in its binary wire format: the dimension and an
//! unused word as big-endian `int16`, then each component as a big-endian `float4`.

use bytes::{BufMut, BytesMut};
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

#[derive(Debug)]
pub struct Vector<'a>(pub &'a [f32]);

impl ToSql for Vector<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let dim =
            i16::try_from(self.0.len()).map_err(|_| format!("a vector of {} dimensions is too long", self.0.len()))?;
        out.reserve(4 + 4 * self.0.len());
        out.put_i16(dim);
        out.put_i16(0);
        for x in self.0 {
            out.put_f32(*x);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    to_sql_checked!();
}
