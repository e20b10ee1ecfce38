/*
 * An asset contract written against Fabric's official fabric-contract-api, run unmodified as a
 * chaincode server (chaincode-as-a-service) that GridLedger peers dial. It exercises what the
 * peer must serve over the shim protocol: state reads and writes, range iteration (also
 * paginated), key history, chaincode events, errors, the client identity taken from the signed
 * proposal, key-level endorsement policies (state metadata) and calls to another chaincode.
 *
 * Start: CORE_PEER_LOCALMSPID=DSOMSP npx fabric-chaincode-node server \
 *          --chaincode-address 127.0.0.1:9999 --chaincode-id assets_1.0:0000
 */
'use strict';

const { Contract } = require('fabric-contract-api');
const { KeyEndorsementPolicy } = require('fabric-shim');

class AssetContract extends Contract {
    constructor() {
        super('AssetContract');
    }

    async CreateAsset(ctx, id, value) {
        if (await this._exists(ctx, id)) {
            throw new Error(`the asset ${id} already exists`);
        }
        const asset = { id, value, owner: ctx.clientIdentity.getMSPID() };
        const bytes = Buffer.from(JSON.stringify(asset));
        await ctx.stub.putState(id, bytes);
        ctx.stub.setEvent('AssetCreated', bytes);
        return JSON.stringify(asset);
    }

    async ReadAsset(ctx, id) {
        const bytes = await ctx.stub.getState(id);
        if (!bytes || bytes.length === 0) {
            throw new Error(`the asset ${id} does not exist`);
        }
        return bytes.toString();
    }

    async UpdateAsset(ctx, id, value) {
        const asset = JSON.parse(await this.ReadAsset(ctx, id));
        asset.value = value;
        await ctx.stub.putState(id, Buffer.from(JSON.stringify(asset)));
        return JSON.stringify(asset);
    }

    async DeleteAsset(ctx, id) {
        await this.ReadAsset(ctx, id);
        await ctx.stub.deleteState(id);
    }

    async GetAllAssets(ctx) {
        const assets = [];
        for await (const { key, value } of ctx.stub.getStateByRange('', '')) {
            assets.push({ key, value: JSON.parse(value.toString()) });
        }
        return JSON.stringify(assets);
    }

    async GetHistory(ctx, id) {
        const history = [];
        for await (const entry of ctx.stub.getHistoryForKey(id)) {
            history.push({ txId: entry.txId, isDelete: entry.isDelete });
        }
        return JSON.stringify(history);
    }

    async WhoAmI(ctx) {
        return JSON.stringify({
            mspId: ctx.clientIdentity.getMSPID(),
            id: ctx.clientIdentity.getID(),
            txId: ctx.stub.getTxID(),
            channel: ctx.stub.getChannelID(),
            peerMspId: ctx.stub.getMspID(),
        });
    }

    async GetAssetsPage(ctx, pageSize, bookmark) {
        const { iterator, metadata } = await ctx.stub.getStateByRangeWithPagination(
            '', '', parseInt(pageSize, 10), bookmark);
        const keys = [];
        for (let r = await iterator.next(); !r.done; r = await iterator.next()) {
            keys.push(r.value.key);
        }
        await iterator.close();
        return JSON.stringify({
            keys,
            fetched: metadata.fetchedRecordsCount,
            bookmark: metadata.bookmark,
        });
    }

    // From the next block on, changes of the asset need a peer of each of these orgs
    // (comma-separated MSP ids).
    async SetOwnerOrgs(ctx, id, mspIds) {
        await this.ReadAsset(ctx, id);
        const policy = new KeyEndorsementPolicy();
        policy.addOrgs('PEER', ...mspIds.split(','));
        await ctx.stub.setStateValidationParameter(id, policy.getPolicy());
    }

    async GetOwnerOrgs(ctx, id) {
        const policy = await ctx.stub.getStateValidationParameter(id);
        const orgs = policy && policy.length > 0 ? new KeyEndorsementPolicy(policy).listOrgs() : [];
        return JSON.stringify(orgs.sort());
    }

    // Calls another chaincode (on `channel`, or this one when empty) with the arguments in
    // the JSON array `args` (the function first) and returns its status and payload.
    async CallChaincode(ctx, chaincode, channel, args) {
        const response = await ctx.stub.invokeChaincode(chaincode, JSON.parse(args), channel);
        return JSON.stringify({
            status: response.status,
            message: response.message,
            payload: response.payload.toString(),
        });
    }

    // Private data in the client organization's implicit collection; the value comes from
    // the transient map entry `value`, so it never reaches the ordering service.
    async PutSecret(ctx, id) {
        const value = ctx.stub.getTransient().get('value');
        if (!value || value.length === 0) {
            throw new Error('PutSecret needs a "value" in the transient map');
        }
        await ctx.stub.putPrivateData(this._ownCollection(ctx), id, value);
    }

    async GetSecret(ctx, id) {
        const bytes = await ctx.stub.getPrivateData(this._ownCollection(ctx), id);
        return Buffer.from(bytes || []).toString();
    }

    // The hex SHA-256 of a value of `mspId`'s implicit collection, known to every peer.
    async GetSecretHash(ctx, mspId, id) {
        const hash = await ctx.stub.getPrivateDataHash(`_implicit_org_${mspId}`, id);
        return Buffer.from(hash || []).toString('hex');
    }

    // From the next block on, writes of the caller org's secret `id` need a peer of each of
    // these orgs (comma-separated MSP ids) instead of the collection's policy.
    async SetSecretOwnerOrgs(ctx, id, mspIds) {
        const policy = new KeyEndorsementPolicy();
        policy.addOrgs('PEER', ...mspIds.split(','));
        await ctx.stub.setPrivateDataValidationParameter(this._ownCollection(ctx), id, policy.getPolicy());
    }

    async GetSecretOwnerOrgs(ctx, id) {
        const policy = await ctx.stub.getPrivateDataValidationParameter(this._ownCollection(ctx), id);
        const orgs = policy && policy.length > 0 ? new KeyEndorsementPolicy(policy).listOrgs() : [];
        return JSON.stringify(orgs.sort());
    }

    async PurgeSecret(ctx, id) {
        await ctx.stub.purgePrivateData(this._ownCollection(ctx), id);
    }

    _ownCollection(ctx) {
        return `_implicit_org_${ctx.clientIdentity.getMSPID()}`;
    }

    async _exists(ctx, id) {
        const bytes = await ctx.stub.getState(id);
        return !!bytes && bytes.length > 0;
    }
}

module.exports.AssetContract = AssetContract;
module.exports.contracts = [AssetContract];
