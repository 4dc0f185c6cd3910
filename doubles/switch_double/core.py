"""The switch: routes FSPIOP requests and callbacks between DFSPs, as Mojaloop's hub does.

`accept` is called once a request passed synchronous validation (the HTTP answer is 202/200);
the work happens in a background task. Messages for the simulated payee are answered inline;
everything else goes out over HTTP through `Delivery`. Transfers live in `transfers.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from doubles.switch_double.delivery import Delivery
from doubles.switch_double.faults import Fault, FaultBook
from doubles.switch_double.metrics import SwitchMetrics
from doubles.switch_double.settings import SwitchSettings
from doubles.switch_double.simulated_payee import SimulatedPayee
from doubles.switch_double.state import BoundedMap, Directory, QuoteRecord, Sent
from doubles.switch_double.transfers import Transfers
from doubles.switch_double.wire import Message, error_message, fingerprint

log = logging.getLogger("doubles.switch_double")


class Switch:
    """State and routing of one switch double."""

    def __init__(
        self,
        settings: SwitchSettings,
        metrics: SwitchMetrics,
        delivery: Delivery,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.delivery = delivery
        self.directory = Directory()
        self.faults = FaultBook()
        self.payee: SimulatedPayee | None = None
        if settings.simulated_payee:
            self.payee = SimulatedPayee(settings, self.directory)
        self.quotes: BoundedMap[str, QuoteRecord] = BoundedMap(
            settings.max_records, settings.record_ttl_s
        )
        #: party path -> DFSPs waiting for it (party callbacks carry no request id)
        self.lookups: BoundedMap[str, set[str]] = BoundedMap(
            settings.max_records, settings.record_ttl_s
        )
        self.transfers = Transfers(self)
        self._tasks: set[asyncio.Task[None]] = set()

    # --- plumbing ------------------------------------------------------------------------

    def known(self, fsp_id: str | None) -> bool:
        """A DFSP the switch can reach (registered with a callback URL, or the simulated one)."""
        if fsp_id is None:
            return False
        if self.payee is not None and fsp_id == self.payee.fsp_id:
            return True
        dfsp = self.directory.get(fsp_id)
        return dfsp is not None and bool(dfsp.callback_base)

    def destination_of(self, msg: Message) -> str | None:
        """Where a request goes: FSPIOP-Destination, else the oracle or the body's payee."""
        route = msg.route
        if msg.destination:
            return msg.destination
        body = msg.body or {}
        if route.resource == "parties" and msg.method == "GET":
            return self.directory.owner_of(route.party_key())
        if route.resource == "quotes" and msg.method == "POST":
            payee = body.get("payee")
            info = payee.get("partyIdInfo") if isinstance(payee, dict) else None
            fsp = info.get("fspId") if isinstance(info, dict) else None
            return fsp if isinstance(fsp, str) else None
        if route.resource == "transfers" and msg.method == "POST":
            fsp = body.get("payeeFsp")
            return fsp if isinstance(fsp, str) else None
        return None

    def spawn(self, work: Callable[[], Awaitable[object]]) -> None:
        """Run a coroutine function in the background, logged if it fails, awaited at shutdown."""

        async def run() -> None:
            try:
                await work()
            except Exception:
                log.exception("background work failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def accept(self, msg: Message) -> None:
        """A validated request: find the fault that applies to it, handle it in the background."""
        route = msg.route
        fault = self.faults.take(msg.method, route.resource, msg.path, self.destination_of(msg))
        if fault is not None:
            self.metrics.faults.labels(fault.action).inc()
            log.info(
                "fault %s (rule %d) on %s %s", fault.action, fault.rule_id, msg.method, msg.path
            )
        self.spawn(lambda: self.handle(msg, fault))

    async def aclose(self) -> None:
        """Wait a little for messages still being delivered, then close the HTTP pool."""
        self.transfers.stop_timers()
        pending = list(self._tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.settings.shutdown_grace_s)
            for task in late:
                task.cancel()
        await self.delivery.aclose()

    async def send(self, msg: Message, fault: Fault | None) -> bool:
        """Deliver `msg` to `msg.destination`; False when it could not be delivered."""
        to = msg.destination
        resource = msg.route.resource
        if self.payee is not None and to == self.payee.fsp_id:
            self.metrics.callbacks.labels(resource, msg.method, "internal").inc()
            for reply in self.payee.receive(msg):
                await self.handle(reply, fault)
            return True
        if fault is not None and fault.action == "drop":
            self.metrics.callbacks.labels(resource, msg.method, "dropped").inc()
            log.info("fault: dropped %s %s to %s", msg.method, msg.path, to)
            return True
        if fault is not None and fault.action == "delay":
            await asyncio.sleep(fault.delay_s)
        dfsp = self.directory.get(to) if to else None
        if dfsp is None or not dfsp.callback_base:
            self.metrics.callbacks.labels(resource, msg.method, "failed").inc()
            log.warning("no callback URL for %r: %s %s not delivered", to, msg.method, msg.path)
            return False
        return await self.delivery.deliver(dfsp.callback_base, msg)

    def error(self, msg: Message, code: str, detail: str = "", *, to: str | None = None) -> Message:
        """The switch's error callback answering `msg` (to its sender unless `to` says else)."""
        return error_message(
            source=self.settings.fsp_id,
            to=to or msg.source,
            path=self.base_of(msg),
            code=code,
            detail=detail,
            version=msg.version,
        )

    @staticmethod
    def base_of(msg: Message) -> str:
        """The path answers to `msg` go to (`POST /quotes` is answered on `/quotes/{quoteId}`)."""
        route = msg.route
        if route.id is not None:
            return route.base
        key = "quoteId" if route.resource == "quotes" else "transferId"
        return f"/{route.resource}/{(msg.body or {}).get(key, '')}"

    async def request(self, msg: Message, to: str, fault: Fault | None) -> bool:
        """Forward a request; if `to` cannot be reached its sender gets a 1001 error callback."""
        if await self.send(msg.forward(to), fault):
            return True
        await self.send(self.error(msg, "1001", f"{to} could not be reached"), None)
        return False

    # --- dispatch ------------------------------------------------------------------------

    async def handle(self, msg: Message, fault: Fault | None) -> None:
        route = msg.route
        if fault is not None and fault.action == "error":
            if route.resource == "transfers" and msg.method == "POST":
                await self.transfers.reject(msg, fault)
            else:
                await self.send(self.error(msg, fault.error_code, "injected fault"), None)
            return
        if route.resource == "transfers":
            await self.transfers.handle(msg, fault)
        elif route.resource == "parties":
            await self._parties(msg, fault)
        else:
            await self._quotes(msg, fault)

    # --- parties -------------------------------------------------------------------------

    async def _parties(self, msg: Message, fault: Fault | None) -> None:
        base = msg.route.base
        if msg.method == "GET":
            owner = self.destination_of(msg)
            if owner is None or not self.known(owner):
                detail = f"no DFSP owns {base.removeprefix('/parties/')}"
                if owner is not None:
                    detail = f"{owner} is not a registered DFSP"
                code = "3204" if owner is None else "3201"
                await self.send(self.error(msg, code, detail), fault)
                return
            waiting = self.lookups.get(base) or set()
            waiting.add(msg.source)
            self.lookups.put(base, waiting)
            await self.request(msg, owner, fault)
            return
        # PUT /parties/... (or /error): to FSPIOP-Destination, else every DFSP that asked
        waiting = self.lookups.pop(base) or set()
        if msg.destination:
            waiting.discard(msg.destination)
            if waiting:  # the others still wait for their own answer
                self.lookups.put(base, waiting)
        targets = [msg.destination] if msg.destination else sorted(waiting)
        if not targets:
            log.warning("party callback %s from %s has nobody to go to", msg.path, msg.source)
        for target in targets:
            await self.send(msg.forward(target), fault)

    # --- quotes --------------------------------------------------------------------------

    async def _quotes(self, msg: Message, fault: Fault | None) -> None:
        route = msg.route
        if msg.method == "POST":
            await self._quote_request(msg, fault)
            return
        record = self.quotes.get(route.id or "")
        if msg.method == "GET":
            if record is None or msg.source not in (record.payer, record.payee):
                await self.send(self.error(msg, "3205", f"quote {route.id} is unknown"), fault)
            elif record.result is not None:
                await self.send(self._resend(record.result, msg.source, record.version), fault)
            else:
                await self.request(msg, record.payee, fault)
            return
        # PUT /quotes/{id}[/error] from the payee
        to = record.payer if record is not None else msg.destination
        if to is None:
            await self.send(self.error(msg, "3205", f"quote {route.id} is unknown"), fault)
            return
        if record is not None:
            record.result = Sent(msg.path, msg.body or {}, msg.source)
        await self.send(msg.forward(to), fault)

    async def _quote_request(self, msg: Message, fault: Fault | None) -> None:
        body = msg.body or {}
        quote_id = str(body["quoteId"])
        print_ = fingerprint(body)
        record = self.quotes.get(quote_id)
        if record is not None:
            await self.duplicate(msg, record.fingerprint == print_, record.result, fault)
            return
        payee = self.destination_of(msg)
        if not self.known(payee):
            await self.send(self.error(msg, "3201", f"destination {payee} is unknown"), fault)
            return
        assert payee is not None
        self.quotes.put(quote_id, QuoteRecord(quote_id, msg.source, payee, print_, msg.version))
        await self.request(msg, payee, fault)

    async def duplicate(
        self, msg: Message, same: bool, result: Sent | None, fault: Fault | None
    ) -> None:
        """A repeated POST: resend the answer if there is one; a changed request is a 3106."""
        if not same:
            await self.send(self.error(msg, "3106", f"{self.base_of(msg)} was sent before"), fault)
        elif result is not None:
            await self.send(self._resend(result, msg.source, msg.version), fault)
        else:
            log.info("duplicate %s %s still in flight: ignored", msg.method, self.base_of(msg))

    @staticmethod
    def _resend(sent: Sent, to: str, version: str) -> Message:
        return Message("PUT", sent.path, sent.source, to, sent.body, version)
