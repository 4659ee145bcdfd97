/*
 * Script include: CertopsWebhook (Application: Global, Accessible from: This application scope only,
 * Client callable: false).
 *
 * Notifies certops that a certificate record changed. The notification names the record only
 * (number, sys_id, class): certops reads the record back through the Table API and validates
 * what the instance holds, never what a message claims.
 *
 * Signing (certops's scheme for every signed HTTP message):
 *   x-certops-timestamp: <unix seconds>
 *   x-certops-signature: sha256=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<exact body bytes>")>
 * certops refuses a timestamp more than 300 s away from its clock, so a captured request cannot
 * be replayed later. The secret is the system property x_certops.webhook_secret (type password2,
 * readable by admin only); the endpoint is x_certops.webhook_url (https://.../webhooks/servicenow).
 */
var CertopsWebhook = Class.create();
CertopsWebhook.prototype = {
    initialize: function() {},

    /* The exact body sent: compact JSON, fields in a fixed order. */
    body: function(current) {
        return JSON.stringify({
            record: {
                number: String(current.getValue('number')),
                sys_id: String(current.getUniqueValue()),
                sys_class_name: String(current.getRecordClassName())
            }
        });
    },

    /* Lowercase hex of a base64 string (GlideCertificateEncryption returns the MAC in base64). */
    base64ToHex: function(b64) {
        var alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
        var hex = '';
        var bits = 0;
        var value = 0;
        for (var i = 0; i < b64.length; i++) {
            var c = b64.charAt(i);
            if (c === '=') break;
            var idx = alphabet.indexOf(c);
            if (idx < 0) continue;
            value = (value << 6) | idx;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                var byte = (value >> bits) & 0xff;
                hex += (byte < 16 ? '0' : '') + byte.toString(16);
            }
        }
        return hex;
    },

    /* The two headers for `body` at `timestamp` (unix seconds) with `secret`. */
    sign: function(secret, timestamp, body) {
        var key = GlideStringUtil.base64Encode(secret);
        var mac = new GlideCertificateEncryption().generateMac(key, 'HmacSHA256', timestamp + '.' + body);
        return {
            'x-certops-timestamp': String(timestamp),
            'x-certops-signature': 'sha256=' + this.base64ToHex(mac)
        };
    },

    /* Sends the notification; called by the business rule "certops: notify on certificate records". */
    notify: function(current) {
        var url = gs.getProperty('x_certops.webhook_url');
        var secret = gs.getProperty('x_certops.webhook_secret');
        if (!url || !secret) {
            gs.error('certops: x_certops.webhook_url or x_certops.webhook_secret is not set; not notifying');
            return;
        }
        var body = this.body(current);
        var timestamp = Math.floor(new GlideDateTime().getNumericValue() / 1000);
        var headers = this.sign(secret, timestamp, body);
        var r = new sn_ws.RESTMessageV2();
        r.setEndpoint(url);
        r.setHttpMethod('post');
        r.setRequestHeader('Content-Type', 'application/json');
        r.setRequestHeader('x-certops-timestamp', headers['x-certops-timestamp']);
        r.setRequestHeader('x-certops-signature', headers['x-certops-signature']);
        r.setRequestBody(body);
        r.setHttpTimeout(10000);
        var response = r.execute();
        var status = response.getStatusCode();
        // 202: started; 200: the same trigger was already running (idempotent). Anything else
        // is logged with certops's JSON error; the secret and signature are never logged.
        if (status != 200 && status != 202) {
            gs.warn('certops: notification for ' + current.getValue('number') + ' answered ' + status + ': ' + response.getBody());
        }
    },

    type: 'CertopsWebhook'
};
