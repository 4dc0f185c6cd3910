package org.phee.engine;

import org.operaton.bpm.engine.impl.history.AbstractHistoryLevel;
import org.operaton.bpm.engine.impl.history.HistoryLevel;
import org.operaton.bpm.engine.impl.history.event.HistoryEventType;
import org.operaton.bpm.engine.impl.history.event.HistoryEventTypes;

/**
 * History level "phee": what the back office reads through change data capture, nothing more.
 *
 * <p>Level "audit" (process instances, activity instances, variable instances) plus incidents.
 * Level "full" adds, for every payment, a row per variable update (ACT_HI_DETAIL), per job
 * (timer) created and deleted, per external task created, locked and completed, and the user
 * operation log: measured as the largest share of the engine's and PostgreSQL's work per
 * payment, and nothing phee reads (docs/decisions/0019).
 */
public final class PaymentHistoryLevel extends AbstractHistoryLevel {

  public static final String NAME = "phee";
  /** Above Operaton's own ids (0-3) and clear of them. */
  public static final int ID = 17;

  @Override
  public int getId() {
    return ID;
  }

  @Override
  public String getName() {
    return NAME;
  }

  @Override
  public boolean isHistoryEventProduced(HistoryEventType eventType, Object entity) {
    return HistoryLevel.HISTORY_LEVEL_AUDIT.isHistoryEventProduced(eventType, entity)
        || eventType == HistoryEventTypes.INCIDENT_CREATE
        || eventType == HistoryEventTypes.INCIDENT_RESOLVE
        || eventType == HistoryEventTypes.INCIDENT_DELETE
        || eventType == HistoryEventTypes.INCIDENT_UPDATE
        || eventType == HistoryEventTypes.INCIDENT_MIGRATE;
  }
}
