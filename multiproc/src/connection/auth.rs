//! Mutual HMAC-SHA256 challenge-response (Python 3.12's protocol).
