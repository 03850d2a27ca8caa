import { allowedKeyTypes, backendPolicy, backendPolicyName, defaultDevicePolicy, defaultDevicePolicyName, defaultDeviceValidityDays, } from "../core/index.js";
export const defaultTemplateName = 'default';
const actor = 'system';
/**
 * Gives a fresh registry what `npm start` needs to enroll a first device: the device and backend policies
 * and the default template. Runs on every start, so it only adds what is missing; an operator's edits to
 * these names are never overwritten.
 */
export async function seedDefaults(registry) {
    for (const [name, document] of [
        [defaultDevicePolicyName, defaultDevicePolicy],
        [backendPolicyName, backendPolicy],
    ]) {
        if ((await registry.getPolicy(name)) !== undefined)
            continue;
        await registry.putPolicy(name, document, { actor, action: 'policy.put', result: 'ok', detail: { policy: name, seeded: true } });
    }
    if ((await registry.getTemplate(defaultTemplateName)) === undefined) {
        await registry.putTemplate({
            name: defaultTemplateName,
            policy: defaultDevicePolicyName,
            validityDays: defaultDeviceValidityDays,
            keyTypes: allowedKeyTypes,
            requireAllowlist: false,
            allowReenroll: false,
        }, { actor, action: 'template.put', result: 'ok', detail: { template: defaultTemplateName, seeded: true } });
    }
}
