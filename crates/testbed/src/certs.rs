//! Certificates and keys for the test control plane.
//!
//! rustls refuses a self-signed serving certificate that is its own CA
//! (`CaUsedAsEndEntity`), so the harness makes a CA and signs the apiserver's
//! certificate (SAN `IP:127.0.0.1`, plus the address it binds for a real node)
//! with it.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

pub struct Pki {
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    /// Signs service-account tokens.
    pub service_account_key_pem: String,
    /// Verifies service-account tokens.
    pub service_account_public_pem: String,
}

pub fn generate() -> Pki {
    generate_for(&[])
}

/// [`generate`], with the serving certificate also valid for `extra_ips`
/// (an API server bound where pods reach it).
pub fn generate_for(extra_ips: &[IpAddr]) -> Pki {
    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.distinguished_name.push(DnType::CommonName, "conveyor-test-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

    let serving_key = KeyPair::generate().expect("generate serving key");
    let mut serving_params = CertificateParams::new(vec!["localhost".to_string()]).expect("serving params");
    serving_params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    serving_params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    for ip in extra_ips {
        serving_params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let serving_cert = serving_params.signed_by(&serving_key, &issuer).expect("sign serving cert");

    let service_account_key = KeyPair::generate().expect("generate service-account key");
    Pki {
        ca_cert_pem: ca_cert.pem(),
        serving_cert_pem: serving_cert.pem(),
        serving_key_pem: serving_key.serialize_pem(),
        service_account_key_pem: service_account_key.serialize_pem(),
        service_account_public_pem: service_account_key.public_key_pem(),
    }
}
