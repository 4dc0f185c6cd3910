"""FSPIOP (Mojaloop's scheme API): headers, schemas, JWS, ILP, errors and ids, shared by every part."""
