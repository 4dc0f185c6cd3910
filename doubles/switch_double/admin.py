"""The admin API: register DFSPs and their parties (the oracle), inject faults, inspect state.

Not part of FSPIOP; tests, demos and the local site use it to set the switch up.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response

from doubles.switch_double.core import Switch
from doubles.switch_double.faults import FaultSpec
from doubles.switch_double.settings import DfspSpec
from doubles.switch_double.state import Dfsp, PartyConflictError


def _dfsp_json(dfsp: Dfsp, simulated: bool) -> dict[str, Any]:
    return {
        "fspId": dfsp.fsp_id,
        "callbackBase": dfsp.callback_base,
        "simulated": simulated,
        "parties": [p.model_dump(by_alias=True, exclude_none=True) for p in dfsp.parties],
    }


def admin_router(switch: Switch) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])
    simulated = switch.settings.simulated_payee

    @router.put("/dfsps/{fsp_id}")
    def put_dfsp(fsp_id: str, spec: DfspSpec) -> dict[str, Any]:
        """Register (or replace) a DFSP: its callback base URL and the parties it owns."""
        if fsp_id != simulated and not spec.callback_base:
            raise HTTPException(400, "callbackBase is required for a DFSP outside the switch")
        if fsp_id == switch.settings.fsp_id:
            raise HTTPException(400, f"{fsp_id} is the switch itself")
        try:
            dfsp = switch.directory.register(fsp_id, spec)
        except PartyConflictError as err:
            raise HTTPException(409, str(err)) from err
        return _dfsp_json(dfsp, fsp_id == simulated)

    @router.get("/dfsps")
    def list_dfsps() -> list[dict[str, Any]]:
        return [_dfsp_json(d, d.fsp_id == simulated) for d in switch.directory.all()]

    @router.get("/dfsps/{fsp_id}")
    def get_dfsp(fsp_id: str) -> dict[str, Any]:
        dfsp = switch.directory.get(fsp_id)
        if dfsp is None:
            raise HTTPException(404, f"{fsp_id} is not registered")
        return _dfsp_json(dfsp, fsp_id == simulated)

    @router.delete("/dfsps/{fsp_id}", status_code=204)
    def delete_dfsp(fsp_id: str) -> Response:
        if not switch.directory.remove(fsp_id):
            raise HTTPException(404, f"{fsp_id} is not registered")
        return Response(status_code=204)

    @router.post("/faults", status_code=201)
    def add_fault(spec: FaultSpec) -> dict[str, int]:
        return {"id": switch.faults.add(spec)}

    @router.get("/faults")
    def list_faults() -> list[dict[str, object]]:
        return switch.faults.listing()

    @router.delete("/faults")
    def clear_faults() -> dict[str, int]:
        return {"removed": switch.faults.clear()}

    @router.get("/transfers/{transfer_id}")
    def get_transfer(transfer_id: str) -> dict[str, Any]:
        """The switch's view of a transfer (state, condition, expiration, error code)."""
        snapshot = switch.transfers.snapshot(transfer_id)
        if snapshot is None:
            raise HTTPException(404, f"transfer {transfer_id} is unknown")
        return snapshot

    @router.post("/reset")
    def reset() -> dict[str, int]:
        """Forget quotes, transfers, pending lookups and faults; registered DFSPs stay."""
        counts = {"transfers": len(switch.transfers), "quotes": len(switch.quotes)}
        switch.transfers.clear()
        switch.quotes.clear()
        switch.lookups.clear()
        counts["faults"] = switch.faults.clear()
        return counts

    return router
