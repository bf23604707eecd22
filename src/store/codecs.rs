//! Column codecs: values whose column type differs between the two databases, bound and read
//! the same way by the shared store. Each database says in its own module what carries them
//! (`CarriedBy`); the sqlx traits are implemented here once, by delegating to that carrier.

use std::net::IpAddr;

use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

/// A scope list: `TEXT[]` on PostgreSQL, JSON text on SQLite.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scopes(pub Vec<String>);

/// A JSON document: `JSONB` on PostgreSQL, JSON text on SQLite.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonDoc(pub Value);

/// An IP address: `INET` on PostgreSQL (a network is read as its host address, like `host()`),
/// text on SQLite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IpAddress(pub IpAddr);

/// How database `D` carries a codec value: as `Carrier`, a type the driver knows.
pub trait CarriedBy<D: Database>: Sized {
    /// The driver's own type for the column.
    type Carrier: for<'q> Encode<'q, D> + for<'r> Decode<'r, D> + Type<D>;
    /// The value as the driver binds it.
    fn to_carrier(&self) -> Self::Carrier;
    /// The value from what the driver read.
    fn from_carrier(carrier: Self::Carrier) -> Result<Self, BoxDynError>;
}

/// Implements `Type`, `Encode` and `Decode` for a codec on every database that carries it.
macro_rules! delegate_to_carrier {
    ($($codec:ty),* $(,)?) => {$(
        impl<D: Database> Type<D> for $codec
        where
            $codec: CarriedBy<D>,
        {
            fn type_info() -> D::TypeInfo {
                <<$codec as CarriedBy<D>>::Carrier as Type<D>>::type_info()
            }

            fn compatible(ty: &D::TypeInfo) -> bool {
                <<$codec as CarriedBy<D>>::Carrier as Type<D>>::compatible(ty)
            }
        }

        impl<'q, D: Database> Encode<'q, D> for $codec
        where
            $codec: CarriedBy<D>,
        {
            fn encode_by_ref(&self, buf: &mut D::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
                Encode::<'q, D>::encode(self.to_carrier(), buf)
            }
        }

        impl<'r, D: Database> Decode<'r, D> for $codec
        where
            $codec: CarriedBy<D>,
        {
            fn decode(value: D::ValueRef<'r>) -> Result<Self, BoxDynError> {
                Self::from_carrier(<<$codec as CarriedBy<D>>::Carrier as Decode<'r, D>>::decode(value)?)
            }
        }
    )*};
}

delegate_to_carrier!(Scopes, JsonDoc, IpAddress);
