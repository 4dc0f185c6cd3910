"""FSPIOP, Mojaloop's scheme API: headers, schemas, JWS, ILP, errors and ids for every part."""
