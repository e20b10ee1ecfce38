'use strict';
// Compatibility test: the official Hyperledger Fabric Gateway client for Node
// (@hyperledger/fabric-gateway), unmodified, against a running GridLedger network.
//
// Needs GRIDLEDGER_NETWORK=<path to network.json> written by `gridledger up --dir DIR`.
// Paths inside network.json are relative to the folder that holds it.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, it } = require('node:test');

const grpc = require('@grpc/grpc-js');
const {
    CommitError,
    EndorseError,
    GatewayError,
    StatusCode,
    connect,
    signers,
} = require('@hyperledger/fabric-gateway');
const protos = require('@hyperledger/fabric-protos');

const ORG = 'RetailerMSP';
const USER = 'User1';
const CHANNEL = 'market';
const CHAINCODE = 'basic';
const CALL_TIMEOUT_MS = 15_000;
const TEST_TIMEOUT_MS = 90_000;

// ---------------------------------------------------------------------------------------------
// Helpers: network.json, connections, error formatting.

const VALIDATION_CODE_NAMES = Object.fromEntries(
    Object.entries(StatusCode).map(([name, code]) => [code, name]),
);

function validationCodeName(code) {
    return `${VALIDATION_CODE_NAMES[code] ?? 'UNKNOWN_VALIDATION_CODE'} (${code})`;
}

function grpcCodeName(code) {
    return `${grpc.status[code] ?? 'UNKNOWN_GRPC_CODE'} (${code})`;
}

function jsonSafe(value) {
    return JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? `${v}n` : v));
}

/** A multi-line, human-readable account of an error from the client library. */
function describeError(err) {
    if (err instanceof GatewayError) {
        const lines = [`${err.name}: gRPC status ${grpcCodeName(err.code)}`, `  message: ${err.message}`];
        if (err.transactionId) {
            lines.push(`  transactionId: ${err.transactionId}`);
        }
        if (err.details.length === 0) {
            lines.push('  details: none (no grpc-status-details-bin trailer)');
        } else {
            lines.push('  details:');
            for (const d of err.details) {
                lines.push(`    - mspId=${jsonSafe(d.mspId)} address=${jsonSafe(d.address)} message=${jsonSafe(d.message)}`);
            }
        }
        return lines.join('\n');
    }
    if (err instanceof CommitError) {
        return `CommitError: transaction ${err.transactionId} committed with ${validationCodeName(err.code)}\n  message: ${err.message}`;
    }
    if (err instanceof Error) {
        return err.stack ?? `${err.name}: ${err.message}`;
    }
    return String(err);
}

/**
 * Wraps a test body so that an unexpected GatewayError or CommitError fails the test with its
 * gRPC code, details and transaction id spelled out (the default report shows only the message).
 */
function explained(body) {
    return async (t) => {
        try {
            await body(t);
        } catch (err) {
            if (err instanceof GatewayError || err instanceof CommitError) {
                throw new Error(`unexpected ${describeError(err)}`, { cause: err });
            }
            throw err;
        }
    };
}

function loadNetwork() {
    const networkPath = process.env.GRIDLEDGER_NETWORK;
    if (!networkPath) {
        throw new Error(
            'GRIDLEDGER_NETWORK is not set: start a network with `gridledger up --dir DIR` and run ' +
                '`GRIDLEDGER_NETWORK=DIR/network.json npm test`',
        );
    }
    const file = path.resolve(networkPath);
    let network;
    try {
        network = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
        throw new Error(`cannot read network description ${file}: ${err.message}`, { cause: err });
    }
    const baseDir = path.dirname(file);
    const resolve = (p) => path.resolve(baseDir, p);

    const orgs = network.organizations ?? [];
    const org = orgs.find((o) => o.mspId === ORG);
    assert.ok(org, `${file}: no organization ${ORG} (have: ${orgs.map((o) => o.mspId).join(', ')})`);
    const peer = org.peers?.[0];
    assert.ok(peer, `${file}: organization ${ORG} lists no peers`);
    for (const field of ['name', 'endpoint', 'tlsCaCert', 'serverName']) {
        assert.ok(peer[field], `${file}: ${ORG} peer entry lacks "${field}": ${jsonSafe(peer)}`);
    }
    const user = org.users?.find((u) => u.name === USER);
    assert.ok(user, `${file}: ${ORG} has no user ${USER} (have: ${(org.users ?? []).map((u) => u.name).join(', ')})`);
    for (const field of ['cert', 'key']) {
        assert.ok(user[field], `${file}: ${ORG} user ${USER} lacks "${field}"`);
    }
    const channel = (network.channels ?? []).find((c) => c.name === CHANNEL);
    assert.ok(channel, `${file}: no channel ${CHANNEL}`);
    assert.ok(
        (channel.organizations ?? []).includes(ORG),
        `${file}: channel ${CHANNEL} does not list ${ORG}: ${jsonSafe(channel.organizations)}`,
    );

    return {
        file,
        peer: {
            name: peer.name,
            endpoint: peer.endpoint,
            serverName: peer.serverName,
            tlsCaCert: fs.readFileSync(resolve(peer.tlsCaCert)),
        },
        identity: { mspId: ORG, credentials: fs.readFileSync(resolve(user.cert)) },
        privateKey: crypto.createPrivateKey(fs.readFileSync(resolve(user.key))),
    };
}

function withDeadline() {
    return { deadline: Date.now() + CALL_TIMEOUT_MS };
}

/** Opens a TLS gRPC connection to the org's peer and a Gateway on it; every call has a deadline. */
async function openGateway(net) {
    const client = new grpc.Client(net.peer.endpoint, grpc.credentials.createSsl(net.peer.tlsCaCert), {
        'grpc.ssl_target_name_override': net.peer.serverName,
    });
    try {
        await new Promise((resolve, reject) =>
            client.waitForReady(Date.now() + CALL_TIMEOUT_MS, (err) => (err ? reject(err) : resolve())),
        );
    } catch (err) {
        client.close();
        throw new Error(
            `cannot connect to ${net.peer.name} at ${net.peer.endpoint} (TLS server name ` +
                `${net.peer.serverName}) within ${CALL_TIMEOUT_MS} ms: ${err.message}. For the TLS ` +
                'handshake errors, rerun with GRPC_VERBOSITY=DEBUG GRPC_TRACE=subchannel,channel',
            { cause: err },
        );
    }
    const gateway = connect({
        client,
        identity: net.identity,
        signer: signers.newPrivateKeySigner(net.privateKey),
        evaluateOptions: withDeadline,
        endorseOptions: withDeadline,
        submitOptions: withDeadline,
        commitStatusOptions: withDeadline,
        chaincodeEventsOptions: withDeadline,
        blockEventsOptions: withDeadline,
        filteredBlockEventsOptions: withDeadline,
    });
    return { client, gateway };
}

/** Test diagnostics, one line each (the TAP reporter would escape embedded newlines). */
function diag(t, text) {
    for (const line of String(text).split('\n')) {
        t.diagnostic(line);
    }
}

function utf8(bytes) {
    return Buffer.from(bytes).toString('utf8');
}

function parseJson(text, what) {
    try {
        return JSON.parse(text);
    } catch (err) {
        assert.fail(`${what}: not JSON (${err.message}): ${jsonSafe(text)}`);
    }
}

let idCounter = 0;
function newAssetId(tag) {
    idCounter += 1;
    return `interop-${tag}-${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}-${idCounter}`;
}

function newAsset(tag, overrides = {}) {
    return { ID: newAssetId(tag), Color: 'blue', Size: 5, Owner: 'Alice', AppraisedValue: 300, ...overrides };
}

function assetArgs(asset) {
    return [asset.ID, asset.Color, String(asset.Size), asset.Owner, String(asset.AppraisedValue)];
}

/** Compares field by field; Size and AppraisedValue may be JSON numbers or strings. */
function assertAsset(actual, expected, what) {
    assert.equal(typeof actual, 'object', `${what}: expected an asset object, got ${jsonSafe(actual)}`);
    for (const field of ['ID', 'Color', 'Size', 'Owner', 'AppraisedValue']) {
        assert.ok(actual !== null && field in actual, `${what}: field ${field} missing in ${jsonSafe(actual)}`);
        assert.equal(String(actual[field]), String(expected[field]), `${what}: field ${field} in ${jsonSafe(actual)}`);
    }
}

/** Awaits a promise that must reject, and returns the error. */
async function rejection(promise, what) {
    let result;
    try {
        result = await promise;
    } catch (err) {
        return err;
    }
    const shown = result instanceof Uint8Array ? jsonSafe(utf8(result)) : jsonSafe(result);
    return assert.fail(`${what}: expected an error, but the call succeeded and returned ${shown}`);
}

/** Reads an event stream until an item matches; fails with what was seen instead. */
async function firstMatching(iterable, matches, describeItem, what) {
    const iterator = iterable[Symbol.asyncIterator]();
    const seen = [];
    for (;;) {
        let next;
        try {
            next = await iterator.next();
        } catch (err) {
            throw new Error(`${what}: the stream failed after ${seen.length} item(s) ${jsonSafe(seen)}:\n${describeError(err)}`, {
                cause: err,
            });
        }
        assert.ok(!next.done, `${what}: the stream ended after ${seen.length} item(s) ${jsonSafe(seen)}`);
        seen.push(describeItem(next.value));
        if (matches(next.value)) {
            return { item: next.value, seen };
        }
    }
}

/** The transaction ids and validation codes of a full block (from TRANSACTIONS_FILTER). */
function blockTransactions(block) {
    const envelopes = block.getData()?.getDataList_asU8() ?? [];
    const metadata = block.getMetadata()?.getMetadataList_asU8() ?? [];
    const filter = metadata[protos.common.BlockMetadataIndex.TRANSACTIONS_FILTER] ?? new Uint8Array(0);
    return envelopes.map((bytes, index) => {
        const envelope = protos.common.Envelope.deserializeBinary(bytes);
        const payload = protos.common.Payload.deserializeBinary(envelope.getPayload_asU8());
        const channelHeader = protos.common.ChannelHeader.deserializeBinary(payload.getHeader().getChannelHeader_asU8());
        return {
            txId: channelHeader.getTxId(),
            type: channelHeader.getType(),
            channelId: channelHeader.getChannelId(),
            validationCode: index < filter.length ? filter[index] : undefined,
        };
    });
}

// ---------------------------------------------------------------------------------------------

describe(`@hyperledger/fabric-gateway against GridLedger (${ORG} ${USER}, channel ${CHANNEL}, chaincode ${CHAINCODE})`, () => {
    let net;
    let client;
    let gateway;
    let network;
    let contract;
    const openStreams = new Set();

    /** Registers an event iterator so that `after` closes it even when a test fails midway. */
    function tracked(stream) {
        openStreams.add(stream);
        return stream;
    }

    function closeStream(stream) {
        openStreams.delete(stream);
        stream.close();
    }

    /** Creates an asset with submitAsync and waits for its commit; returns the commit and status. */
    async function createCommitted(asset, t) {
        const commit = await contract.submitAsync('CreateAsset', { arguments: assetArgs(asset) });
        const status = await commit.getStatus();
        t.diagnostic(`CreateAsset ${asset.ID}: tx ${status.transactionId} ${validationCodeName(status.code)} in block ${status.blockNumber}`);
        assert.ok(status.successful, `CreateAsset ${asset.ID} committed with ${validationCodeName(status.code)}`);
        return { commit, status };
    }

    before(async () => {
        net = loadNetwork();
        ({ client, gateway } = await openGateway(net));
        network = gateway.getNetwork(CHANNEL);
        contract = network.getContract(CHAINCODE);
    });

    after(() => {
        for (const stream of openStreams) {
            stream.close();
        }
        openStreams.clear();
        gateway?.close();
        client?.close();
    });

    it('1. submitTransaction CreateAsset, then evaluateTransaction ReadAsset returns the asset', { timeout: TEST_TIMEOUT_MS }, explained(async (t) => {
        const asset = newAsset('create');
        const result = await contract.submitTransaction('CreateAsset', ...assetArgs(asset));
        t.diagnostic(`CreateAsset returned ${jsonSafe(utf8(result))}`);

        const read = parseJson(utf8(await contract.evaluateTransaction('ReadAsset', asset.ID)), 'ReadAsset result');
        assertAsset(read, asset, 'ReadAsset');

        const exists = utf8(await contract.evaluateTransaction('AssetExists', asset.ID));
        assert.equal(exists, 'true', 'AssetExists of a created asset');
    }));

    it('2. submitAsync TransferAsset: commit status VALID in a block > 0, result = the chaincode return value', { timeout: TEST_TIMEOUT_MS }, explained(async (t) => {
        const asset = newAsset('transfer', { Owner: 'Alice' });
        await contract.submitTransaction('CreateAsset', ...assetArgs(asset));

        const commit = await contract.submitAsync('TransferAsset', { arguments: [asset.ID, 'Bob'] });
        // asset-transfer-basic's TransferAsset returns the previous owner.
        assert.equal(utf8(commit.getResult()), 'Alice', 'getResult() of TransferAsset (the old owner)');

        const status = await commit.getStatus();
        t.diagnostic(`TransferAsset tx ${status.transactionId}: ${validationCodeName(status.code)} in block ${status.blockNumber}`);
        assert.equal(status.transactionId, commit.getTransactionId());
        assert.equal(status.code, StatusCode.VALID, `status code ${validationCodeName(status.code)}`);
        assert.equal(status.successful, true);
        assert.equal(typeof status.blockNumber, 'bigint');
        assert.ok(status.blockNumber > 0n, `blockNumber ${status.blockNumber} must be > 0`);

        const read = parseJson(utf8(await contract.evaluateTransaction('ReadAsset', asset.ID)), 'ReadAsset result');
        assertAsset(read, { ...asset, Owner: 'Bob' }, 'ReadAsset after TransferAsset');
    }));

    it('3. evaluateTransaction of a missing asset throws a GatewayError with details', { timeout: TEST_TIMEOUT_MS }, explained(async (t) => {
        const missing = newAssetId('missing');
        const err = await rejection(contract.evaluateTransaction('ReadAsset', missing), `ReadAsset ${missing}`);
        diag(t, describeError(err));
        assert.ok(err instanceof GatewayError, `expected a GatewayError, got ${describeError(err)}`);
        assert.ok(err.details.length > 0, `GatewayError without details:\n${describeError(err)}`);
        assert.ok(err.message.includes('does not exist'), `message lacks "does not exist":\n${describeError(err)}`);

        const exists = utf8(await contract.evaluateTransaction('AssetExists', missing));
        assert.equal(exists, 'false', 'AssetExists of a missing asset');
    }));

    it('4. submitting CreateAsset for an existing id throws EndorseError ABORTED with details', { timeout: TEST_TIMEOUT_MS }, explained(async (t) => {
        const asset = newAsset('duplicate');
        await contract.submitTransaction('CreateAsset', ...assetArgs(asset));

        const err = await rejection(contract.submitTransaction('CreateAsset', ...assetArgs(asset)), `second CreateAsset ${asset.ID}`);
        diag(t, describeError(err));
        assert.ok(err instanceof EndorseError, `expected an EndorseError, got ${describeError(err)}`);
        assert.equal(err.code, grpc.status.ABORTED, `gRPC code ${grpcCodeName(err.code)}:\n${describeError(err)}`);
        assert.match(err.transactionId, /^[0-9a-f]{64}$/, 'EndorseError.transactionId');
        assert.ok(err.details.length > 0, `EndorseError without details:\n${describeError(err)}`);
        for (const detail of err.details) {
            assert.ok(detail.mspId, `detail without mspId:\n${describeError(err)}`);
            assert.ok(detail.message, `detail without message:\n${describeError(err)}`);
        }
        assert.ok(
            err.details.some((d) => d.message.includes('already exists')),
            `no detail says "already exists":\n${describeError(err)}`,
        );
    }));

    it('5. getChaincodeEvents replays a committed CreateAsset event from a start block', { timeout: TEST_TIMEOUT_MS }, explained(async (t) => {
        const asset = newAsset('ccevent');
        const { status } = await createCommitted(asset, t);

        const events = tracked(await network.getChaincodeEvents(CHAINCODE, { startBlock: status.blockNumber }));
        try {
            const { item: event, seen } = await firstMatching(
                events,
                (e) => e.transactionId === status.transactionId,
                (e) => ({ block: String(e.blockNumber), tx: e.transactionId, name: e.eventName }),
                `chaincode events of ${CHAINCODE} from block ${status.blockNumber}`,
            );
            t.diagnostic(`events read before ours: ${jsonSafe(seen)}`);
            assert.equal(typeof event.blockNumber, 'bigint');
            assert.equal(event.blockNumber, status.blockNumber, 'event blockNumber = commit status blockNumber');
            assert.equal(seen[0].block, String(status.blockNumber), 'the first event replayed comes from the start block');
            assert.equal(event.chaincodeName, CHAINCODE);
            assert.equal(event.eventName, 'CreateAsset');
            assertAsset(parseJson(utf8(event.payload), 'CreateAsset event payload'), asset, 'CreateAsset event payload');
        } finally {
            closeStream(events);
        }
    }));

    it('6. getBlockEvents and getFilteredBlockEvents deliver the block of a committed transaction', { timeout: TEST_TIMEOUT_MS }, explained(async (t) => {
        const asset = newAsset('blockevent');
        const { status } = await createCommitted(asset, t);
        const txId = status.transactionId;

        const blocks = tracked(await network.getBlockEvents({ startBlock: status.blockNumber }));
        try {
            const { item: block } = await firstMatching(
                blocks,
                () => true,
                (b) => ({ number: String(b.getHeader()?.getNumber()) }),
                `block events from block ${status.blockNumber}`,
            );
            assert.equal(BigInt(block.getHeader().getNumber()), status.blockNumber, 'header.number of the first block delivered');
            const txs = blockTransactions(block);
            t.diagnostic(`block ${status.blockNumber}: ${jsonSafe(txs)}`);
            const ours = txs.find((tx) => tx.txId === txId);
            assert.ok(ours, `tx ${txId} not in block ${status.blockNumber}: ${jsonSafe(txs)}`);
            assert.equal(ours.channelId, CHANNEL);
            assert.equal(ours.type, protos.common.HeaderType.ENDORSER_TRANSACTION);
            assert.equal(ours.validationCode, StatusCode.VALID, `TRANSACTIONS_FILTER entry of ${txId}: ${jsonSafe(ours)}`);
        } finally {
            closeStream(blocks);
        }

        const filtered = tracked(await network.getFilteredBlockEvents({ startBlock: status.blockNumber }));
        try {
            const { item: block } = await firstMatching(
                filtered,
                () => true,
                (b) => ({ number: String(b.getNumber()) }),
                `filtered block events from block ${status.blockNumber}`,
            );
            assert.equal(BigInt(block.getNumber()), status.blockNumber, 'number of the first filtered block delivered');
            assert.equal(block.getChannelId(), CHANNEL);
            const txs = block.getFilteredTransactionsList();
            const ours = txs.find((tx) => tx.getTxid() === txId);
            assert.ok(ours, `tx ${txId} not in filtered block: ${jsonSafe(txs.map((tx) => tx.toObject()))}`);
            assert.equal(ours.getTxValidationCode(), StatusCode.VALID, `filtered tx ${jsonSafe(ours.toObject())}`);
            assert.equal(ours.getType(), protos.common.HeaderType.ENDORSER_TRANSACTION);
            const ccEvents = (ours.getTransactionActions()?.getChaincodeActionsList() ?? []).map((a) => a.getChaincodeEvent());
            assert.ok(
                ccEvents.some((e) => e && e.getEventName() === 'CreateAsset' && e.getChaincodeId() === CHAINCODE && e.getTxId() === txId),
                `filtered tx lacks the CreateAsset chaincode event: ${jsonSafe(ours.toObject())}`,
            );
        } finally {
            closeStream(filtered);
        }
    }));

    it('7. two UpdateAsset transactions endorsed on the same state: one VALID, one MVCC_READ_CONFLICT', { timeout: TEST_TIMEOUT_MS }, explained(async (t) => {
        const asset = newAsset('mvcc');
        await contract.submitTransaction('CreateAsset', ...assetArgs(asset));

        const red = { ...asset, Color: 'red', AppraisedValue: 400 };
        const green = { ...asset, Color: 'green', AppraisedValue: 500 };
        // Both are endorsed before either is submitted, so both read the asset at the same version.
        const redTx = await contract.newProposal('UpdateAsset', { arguments: assetArgs(red) }).endorse();
        const greenTx = await contract.newProposal('UpdateAsset', { arguments: assetArgs(green) }).endorse();
        const redCommit = await redTx.submit();
        const greenCommit = await greenTx.submit();
        const [redStatus, greenStatus] = await Promise.all([redCommit.getStatus(), greenCommit.getStatus()]);
        for (const [label, s] of [['red', redStatus], ['green', greenStatus]]) {
            t.diagnostic(`${label}: tx ${s.transactionId} ${validationCodeName(s.code)} in block ${s.blockNumber}`);
        }

        const codes = [redStatus.code, greenStatus.code].sort((a, b) => a - b);
        assert.deepEqual(
            codes,
            [StatusCode.VALID, StatusCode.MVCC_READ_CONFLICT],
            `expected one VALID and one MVCC_READ_CONFLICT, got ${validationCodeName(redStatus.code)} and ${validationCodeName(greenStatus.code)}`,
        );
        const [winner, loser] = redStatus.successful ? [red, greenStatus] : [green, redStatus];
        assert.equal(loser.successful, false, 'the conflicting transaction is not successful');

        const read = parseJson(utf8(await contract.evaluateTransaction('ReadAsset', asset.ID)), 'ReadAsset result');
        assertAsset(read, winner, 'ReadAsset after the conflict (the VALID update wins)');
    }));

    it('8. commit status of a committed transaction can be read again later, also on a new connection', { timeout: TEST_TIMEOUT_MS }, explained(async (t) => {
        const asset = newAsset('status');
        const { commit, status } = await createCommitted(asset, t);

        const again = await commit.getStatus();
        assert.deepEqual(again, status, 'the same commit asked again');

        // A freshly signed request for the same transaction, on a separate gRPC connection.
        const signed = protos.gateway.SignedCommitStatusRequest.deserializeBinary(commit.getBytes());
        signed.setSignature(new Uint8Array(0));
        const second = await openGateway(net);
        try {
            const fresh = second.gateway.newCommit(signed.serializeBinary());
            assert.equal(fresh.getTransactionId(), status.transactionId);
            const freshStatus = await fresh.getStatus();
            t.diagnostic(`fresh status: ${jsonSafe(freshStatus)}`);
            assert.deepEqual(freshStatus, status, 'a fresh CommitStatus request after the fact');
        } finally {
            second.gateway.close();
            second.client.close();
        }
    }));
});
