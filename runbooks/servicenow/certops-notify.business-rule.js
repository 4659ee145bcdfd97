/*
 * Business rule: "certops: notify on certificate records"
 *   Tables:    incident, and a second copy on change_request
 *   When:      async (after the transaction commits, off the user's thread)
 *   Insert:    true    Update: true
 *   Condition: current.category == 'Certificate' && current.active == true
 *              && (current.operation() == 'insert' || current.state.changes() || current.cmdb_ci.changes())
 *   Order:     1000
 *
 * certops's own updates (work notes, state moves made by the integration user) do not
 * re-trigger it: the condition skips updates made by that user.
 */
(function executeRule(current, previous /*null when async*/) {
    if (gs.getUserName() == gs.getProperty('x_certops.integration_user', 'certops.integration')) {
        return;
    }
    new CertopsWebhook().notify(current);
})(current, previous);
