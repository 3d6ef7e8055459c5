// Java SunPKCS11 against hsmux: lists the token's key entries and signs with each private
// key through the PKCS#11 provider; the signature is verified with the certificate's
// public key by Java's own (non-PKCS#11) providers.
import java.security.*;
import java.security.cert.X509Certificate;
import java.util.*;

public class SignTest {
    public static void main(String[] args) throws Exception {
        String cfg = args[0];
        char[] pin = args[1].toCharArray();
        Provider p = Security.getProvider("SunPKCS11").configure(cfg);
        Security.addProvider(p);
        KeyStore ks = KeyStore.getInstance("PKCS11", p);
        ks.load(null, pin);
        List<String> aliases = Collections.list(ks.aliases());
        Collections.sort(aliases);
        System.out.println("aliases: " + aliases);
        int signed = 0;
        for (String alias : aliases) {
            if (!ks.entryInstanceOf(alias, KeyStore.PrivateKeyEntry.class)) continue;
            PrivateKey key = (PrivateKey) ks.getKey(alias, pin);
            X509Certificate cert = (X509Certificate) ks.getCertificate(alias);
            String alg = key.getAlgorithm().equals("EC") ? "SHA256withECDSA" : "SHA256withRSA";
            byte[] data = ("signed by " + alias).getBytes("UTF-8");
            Signature s = Signature.getInstance(alg, p);
            s.initSign(key);
            s.update(data);
            byte[] sig = s.sign();
            // Verify with a provider that is not PKCS#11.
            String verifier = key.getAlgorithm().equals("EC") ? "SunEC" : "SunRsaSign";
            Signature v = Signature.getInstance(alg, verifier);
            v.initVerify(cert.getPublicKey());
            v.update(data);
            if (!v.verify(sig)) throw new AssertionError(alias + ": signature does not verify");
            System.out.println(alias + ": " + alg + " signature verified by " + verifier);
            signed++;
        }
        if (signed < 2) throw new AssertionError("expected at least 2 key entries, signed with " + signed);
    }
}
