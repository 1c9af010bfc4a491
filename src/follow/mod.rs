//! Following log files across rotation.
